package io.segstream.engine;

import org.bouncycastle.crypto.digests.Blake2bDigest;

/** hashlib.blake2b(data, digest_size=n): the digest size is a BLAKE2 parameter, not a truncation. */
final class Blake2b {
  private Blake2b() {}

  static byte[] digest(byte[] data, int bytes) {
    Blake2bDigest d = new Blake2bDigest(bytes * 8);
    d.update(data, 0, data.length);
    byte[] out = new byte[bytes];
    d.doFinal(out, 0);
    return out;
  }
}
