package io.segstream.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.functions.python.DataStreamPythonFunctionInfo;
import org.apache.flink.streaming.api.graph.StreamGraph;
import org.apache.flink.streaming.api.graph.StreamNode;
import org.apache.flink.streaming.api.operators.SimpleOperatorFactory;
import org.apache.flink.streaming.api.operators.StreamOperatorFactory;
import org.apache.flink.streaming.api.operators.python.process.AbstractExternalDataStreamPythonFunctionOperator;
import org.apache.flink.streaming.api.operators.python.process.AbstractExternalTwoInputPythonFunctionOperator;
import org.apache.flink.streaming.api.operators.python.process.ExternalPythonKeyedCoProcessOperator;
import org.apache.flink.types.Row;

import java.lang.reflect.Method;

/**
 * PyFlink's keyed (broadcast) co-process operator for process mode, with the timers of the last
 * bundle before a checkpoint barrier in the checkpoint.
 *
 * <p>Why: in PyFlink 2.3 the Python worker's timer registrations reach the JVM on a gRPC thread,
 * which queues them as mailbox actions. {@code prepareSnapshotPreBarrier} finishes the open
 * bundle (so the state that bundle wrote is in the snapshot) but does not register the timers it
 * queued: they run as mails after the snapshot, and a restore from that checkpoint never fires
 * them. The operator already drains the queue before it advances the watermark; this one also
 * drains it before the snapshot. A queued action whose timer was registered here is a no-op when
 * its mail runs.
 *
 * <p>PyFlink translates a keyed broadcast process function into the stock operator inside the
 * JVM, so {@link #replaceIn(StreamGraph)} swaps it in the finished stream graph. State, timers and
 * uids are those of the stock operator: savepoints move freely between the two.
 */
public class TimerSafeKeyedCoProcessOperator<OUT> extends ExternalPythonKeyedCoProcessOperator<OUT> {

    private static final long serialVersionUID = 1L;

    public TimerSafeKeyedCoProcessOperator(
            Configuration config,
            DataStreamPythonFunctionInfo pythonFunctionInfo,
            TypeInformation<Row> inputTypeInfo1,
            TypeInformation<Row> inputTypeInfo2,
            TypeInformation<OUT> outputTypeInfo) {
        super(config, pythonFunctionInfo, inputTypeInfo1, inputTypeInfo2, outputTypeInfo);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        drainUnregisteredTimers();
    }

    @Override
    public <T> AbstractExternalDataStreamPythonFunctionOperator<T> copy(
            DataStreamPythonFunctionInfo pythonFunctionInfo, TypeInformation<T> outputTypeInfo) {
        return new TimerSafeKeyedCoProcessOperator<>(
                getConfiguration(), pythonFunctionInfo, getLeftInputType(), getRightInputType(), outputTypeInfo);
    }

    /** Replaces every stock ExternalPythonKeyedCoProcessOperator in the graph; returns how many. */
    public static int replaceIn(StreamGraph graph) throws ReflectiveOperationException {
        int replaced = 0;
        for (StreamNode node : graph.getStreamNodes()) {
            StreamOperatorFactory<?> factory = node.getOperatorFactory();
            if (!(factory instanceof SimpleOperatorFactory)) {
                continue;
            }
            Object operator = ((SimpleOperatorFactory<?>) factory).getOperator();
            if (operator.getClass() != ExternalPythonKeyedCoProcessOperator.class) {  // not a subclass: not ours
                continue;
            }
            SimpleOperatorFactory<?> safe =
                    SimpleOperatorFactory.of(replacing((ExternalPythonKeyedCoProcessOperator<?>) operator));
            safe.setChainingStrategy(factory.getChainingStrategy());
            node.setOperatorFactory(safe);
            replaced++;
        }
        return replaced;
    }

    private static <T> TimerSafeKeyedCoProcessOperator<T> replacing(ExternalPythonKeyedCoProcessOperator<T> stock)
            throws ReflectiveOperationException {
        TimerSafeKeyedCoProcessOperator<T> safe = new TimerSafeKeyedCoProcessOperator<>(
                stock.getConfiguration(),
                stock.getPythonFunctionInfo(),
                inputType(stock, "getLeftInputType"),
                inputType(stock, "getRightInputType"),
                stock.getProducedType());
        safe.addSideOutputTags(stock.getSideOutputTags());
        return safe;
    }

    // The input types have only protected getters, out of reach on another instance.
    @SuppressWarnings("unchecked")
    private static TypeInformation<Row> inputType(Object stock, String getter) throws ReflectiveOperationException {
        Method method = AbstractExternalTwoInputPythonFunctionOperator.class.getDeclaredMethod(getter);
        method.setAccessible(true);
        return (TypeInformation<Row>) method.invoke(stock);
    }
}
