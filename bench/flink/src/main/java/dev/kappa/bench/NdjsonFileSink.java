/* Writes the result documents, one per line, to DIR/part-<subtask>.ndjson so that
 * bench/flink/compare can check them against kappa-gen's truth. Each subtask owns its file
 * (no sharing between threads). It also records, for the run's summary, how many documents
 * were written and the last completed checkpoint this JVM saw. */
package dev.kappa.bench;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.functions.sink.RichSinkFunction;

public final class NdjsonFileSink extends RichSinkFunction<String> implements CheckpointListener {
    private static final long serialVersionUID = 1L;

    /* Read by main() after the job (local MiniCluster: same JVM). */
    static final AtomicLong DOCUMENTS = new AtomicLong();
    static final AtomicLong LAST_CHECKPOINT = new AtomicLong();

    private final String dir;
    private transient BufferedWriter out;
    private transient long written;

    public NdjsonFileSink(String dir) {
        this.dir = dir;
    }

    @Override
    public void open(Configuration parameters) throws IOException {
        int subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        Path file = Path.of(dir, "part-" + subtask + ".ndjson");
        out = Files.newBufferedWriter(file, StandardCharsets.UTF_8);
    }

    @Override
    public void invoke(String doc, Context context) throws IOException {
        out.write(doc);
        out.write('\n');
        written++;
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) {
        LAST_CHECKPOINT.accumulateAndGet(checkpointId, Math::max);
    }

    @Override
    public void close() throws IOException {
        if (out != null)
            out.close();
        DOCUMENTS.addAndGet(written);
    }
}
