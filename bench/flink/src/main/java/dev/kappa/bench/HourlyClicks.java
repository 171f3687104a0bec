/* The Flink peer of kappa's seed job (jobs/hourly_clicks.c): clicks per item per event-time
 * hour, read from the same Kafka topic, for bench/flink/compare. Watermarks are assigned in the
 * source (one per partition, bounded out-of-orderness 10 s, as the seed's out_of_order), JSON is
 * parsed in the deserializer (malformed records skipped and counted), keyBy item_id, tumbling
 * 1 h event-time windows with no allowed lateness (the seed sets none), an incremental count.
 * The source is bounded by the topic's latest offsets at start, so the run ends.
 *
 * Usage: HourlyClicks --brokers H:P --topic T --out DIR [--state rocksdb|heap] [-p N]
 *                     [--checkpoint-ms MS] [--watermarks periodic|per-event]
 *   --state rocksdb  RocksDB state, incremental checkpoints every --checkpoint-ms (default 5000)
 *                    to a temporary directory, removed after the run
 *   --state heap     HashMap (heap) state, no checkpoints (the default)
 * Prints one summary line on stdout: documents written, malformed records, checkpoints. */
package dev.kappa.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.stream.Stream;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;

public final class HourlyClicks {
    static final Duration OUT_OF_ORDER = Duration.ofSeconds(10);
    static final Duration WINDOW = Duration.ofHours(1);

    public static void main(String[] argv) throws Exception {
        Args a;
        try {
            a = Args.parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("flink-hourly-clicks: " + e.getMessage());
            System.err.println(Args.USAGE);
            System.exit(2);
            return;
        }
        Path checkpoints = a.rocksdb ? Files.createTempDirectory("flink-bench-ckpt") : null;
        try {
            JobExecutionResult r = run(a, checkpoints);
            System.out.printf("flink-hourly-clicks: state=%s p=%d watermarks=%s documents=%d"
                                      + " malformed=%d checkpoints=%d job_ms=%d%n",
                              a.rocksdb ? "rocksdb" : "heap", a.parallelism, a.watermarks,
                              NdjsonFileSink.DOCUMENTS.get(), ClickDeserializer.MALFORMED.get(),
                              NdjsonFileSink.LAST_CHECKPOINT.get(), r.getNetRuntime());
        } finally {
            if (checkpoints != null)
                removeTree(checkpoints);
        }
    }

    static JobExecutionResult run(Args a, Path checkpoints) throws Exception {
        Configuration conf = new Configuration();
        if (a.rocksdb) {
            conf.set(StateBackendOptions.STATE_BACKEND, "rocksdb");
            conf.set(CheckpointingOptions.INCREMENTAL_CHECKPOINTS, true);
            conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
            conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, checkpoints.toUri().toString());
        } else {
            conf.set(StateBackendOptions.STATE_BACKEND, "hashmap");
        }
        StreamExecutionEnvironment env =
                StreamExecutionEnvironment.createLocalEnvironment(a.parallelism, conf);
        if (a.rocksdb)
            env.enableCheckpointing(a.checkpointMs);

        KafkaSource<Click> source = KafkaSource.<Click>builder()
                                            .setBootstrapServers(a.brokers)
                                            .setTopics(a.topic)
                                            .setGroupId("flink-hourly-clicks")
                                            .setStartingOffsets(OffsetsInitializer.earliest())
                                            .setBounded(OffsetsInitializer.latest())
                                            .setDeserializer(new ClickDeserializer())
                                            .build();
        WatermarkStrategy<Click> watermarks =
                "per-event".equals(a.watermarks)
                        ? WatermarkStrategy.<Click>forGenerator(
                                ctx -> new PerEventWatermarks(OUT_OF_ORDER))
                        : WatermarkStrategy.<Click>forBoundedOutOfOrderness(OUT_OF_ORDER);
        DataStream<Click> clicks = env.fromSource(
                source, watermarks.withTimestampAssigner((click, ts) -> click.timestamp),
                "clicks");
        clicks.keyBy(click -> click.itemId)
                .window(TumblingEventTimeWindows.of(WINDOW))
                .aggregate(new CountClicks(), new HourlyDocument())
                .name("hourly-click-count")
                .uid("hourly-click-count")
                .addSink(new NdjsonFileSink(a.out))
                .name("hourly-click-index");
        return env.execute("hourly_clicks");
    }

    static void removeTree(Path root) throws IOException {
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    /* The command line. */
    static final class Args {
        static final String USAGE =
                "usage: HourlyClicks --brokers H:P --topic T --out DIR [--state rocksdb|heap]"
                + " [-p N] [--checkpoint-ms MS] [--watermarks periodic|per-event]";
        String brokers, topic, out, watermarks = "periodic";
        boolean rocksdb;
        int parallelism = 1;
        long checkpointMs = 5000;

        static Args parse(String[] argv) {
            Args a = new Args();
            for (int i = 0; i < argv.length; i++) {
                String flag = argv[i];
                if (i + 1 >= argv.length)
                    throw new IllegalArgumentException(flag + " needs a value");
                String v = argv[++i];
                switch (flag) {
                case "--brokers" -> a.brokers = v;
                case "--topic" -> a.topic = v;
                case "--out" -> a.out = v;
                case "--state" -> a.rocksdb = parseState(v);
                case "-p", "--parallelism" -> a.parallelism = positive(flag, v);
                case "--checkpoint-ms" -> a.checkpointMs = positive(flag, v);
                case "--watermarks" -> a.watermarks = parseWatermarks(v);
                default -> throw new IllegalArgumentException("unknown option " + flag);
                }
            }
            if (a.brokers == null || a.topic == null || a.out == null)
                throw new IllegalArgumentException("--brokers, --topic and --out are required");
            return a;
        }

        static boolean parseState(String v) {
            return switch (v) {
            case "rocksdb" -> true;
            case "heap" -> false;
            default -> throw new IllegalArgumentException("--state is rocksdb or heap: " + v);
            };
        }

        static String parseWatermarks(String v) {
            if (!v.equals("periodic") && !v.equals("per-event"))
                throw new IllegalArgumentException("--watermarks is periodic or per-event: " + v);
            return v;
        }

        static int positive(String flag, String v) {
            try {
                int n = Integer.parseInt(v);
                if (n > 0)
                    return n;
            } catch (NumberFormatException e) {
                /* reported below */
            }
            throw new IllegalArgumentException(flag + " must be a positive number: " + v);
        }
    }
}
