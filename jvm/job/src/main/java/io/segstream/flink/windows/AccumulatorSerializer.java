package io.segstream.flink.windows;

import java.io.IOException;
import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;

/**
 * The state serializer of {@link Accumulator}: its {@link Accumulator#bytes()} form, length
 * prefixed. With the hashmap state backend the accumulator lives on the heap as an object and is
 * serialized only in checkpoints (the per-event cost is an HLL update, not a sketch copy); with
 * RocksDB it is serialized on every access, like any value. {@link #copy} is deep (the heap
 * backend's copy-on-write snapshots rely on it).
 */
public final class AccumulatorSerializer extends TypeSerializerSingleton<Accumulator> {
  private static final long serialVersionUID = 1L;
  public static final AccumulatorSerializer INSTANCE = new AccumulatorSerializer();

  @Override
  public boolean isImmutableType() {
    return false;
  }

  @Override
  public Accumulator createInstance() {
    return Accumulator.empty(false);
  }

  @Override
  public Accumulator copy(Accumulator from) {
    return Accumulator.of(from.bytes());
  }

  @Override
  public Accumulator copy(Accumulator from, Accumulator reuse) {
    return copy(from);
  }

  @Override
  public int getLength() {
    return -1;
  }

  @Override
  public void serialize(Accumulator record, DataOutputView target) throws IOException {
    byte[] bytes = record.bytes();
    target.writeInt(bytes.length);
    target.write(bytes);
  }

  @Override
  public Accumulator deserialize(DataInputView source) throws IOException {
    byte[] bytes = new byte[source.readInt()];
    source.readFully(bytes);
    return Accumulator.of(bytes);
  }

  @Override
  public Accumulator deserialize(Accumulator reuse, DataInputView source) throws IOException {
    return deserialize(source);
  }

  @Override
  public void copy(DataInputView source, DataOutputView target) throws IOException {
    int length = source.readInt();
    target.writeInt(length);
    target.write(source, length);
  }

  @Override
  public TypeSerializerSnapshot<Accumulator> snapshotConfiguration() {
    return new Snapshot();
  }

  /** Version 1: the Accumulator.bytes() layout. */
  public static final class Snapshot extends SimpleTypeSerializerSnapshot<Accumulator> {
    public Snapshot() {
      super(() -> INSTANCE);
    }
  }
}
