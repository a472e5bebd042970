package io.segstream.engine;

import org.bouncycastle.crypto.digests.Blake2bDigest;

/** hashlib.blake2b(data, digest_size=n): the digest size is a BLAKE2 parameter, not a truncation. */
final class Blake2b {
  private Blake2b() {}

  /** One digest per thread and size, reset before each use (Distinct hashes values on every event). */
  private static final ThreadLocal<Blake2bDigest[]> DIGESTS = ThreadLocal.withInitial(() -> new Blake2bDigest[65]);

  static byte[] digest(byte[] data, int bytes) {
    Blake2bDigest[] cache = DIGESTS.get();
    Blake2bDigest d = cache[bytes];
    if (d == null) {
      d = new Blake2bDigest(bytes * 8);
      cache[bytes] = d;
    } else {
      d.reset();
    }
    d.update(data, 0, data.length);
    byte[] out = new byte[bytes];
    d.doFinal(out, 0);
    return out;
  }
}
