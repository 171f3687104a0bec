/*
 * Starts ONE real OpenSearch node (Elasticsearch-compatible REST API) for
 * kappa's development and integration tests, in-process through the codelibs
 * OpenSearchRunner, from jars resolved from Maven Central by deploy/dev/search.
 *
 * Unlike the runner's own main(), this launcher:
 *  - binds HTTP and transport on 127.0.0.1 at EXPLICIT ports and fails loudly
 *    when it cannot (the runner would silently move to another HTTP port);
 *  - runs a single-node cluster with replicas defaulting to 0, no security
 *    plugin and no disk-watermark read-only surprises;
 *  - shuts the node down cleanly on SIGTERM/SIGINT.
 *
 * Usage: KappaSearchNode --home DIR --http-port N --transport-port N
 *                        [--cluster-name NAME]
 * On success it prints "KAPPA_SEARCH_READY http://127.0.0.1:N" on stdout.
 */

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.CountDownLatch;

import org.codelibs.opensearch.runner.OpenSearchRunner;
import org.opensearch.common.settings.Settings;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.transport.TransportService;

public final class KappaSearchNode {

    private static final String LOG4J2 = String.join("\n",
            "status = error",
            "appender.console.type = Console",
            "appender.console.name = console",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %m%n",
            "rootLogger.level = info",
            "rootLogger.appenderRef.console.ref = console",
            "logger.deprecation.name = org.opensearch.deprecation",
            "logger.deprecation.level = error",
            // Noise on every start of a one-node dev cluster:
            "logger.allocation.name = org.opensearch.cluster.routing.allocation.AllocationService",
            "logger.allocation.level = error",
            "logger.dangling.name = org.opensearch.gateway.DanglingIndicesState",
            "logger.dangling.level = error",
            "");

    private KappaSearchNode() {
    }

    public static void main(final String[] args) {
        final Options opts;
        try {
            opts = Options.parse(args);
        } catch (final IllegalArgumentException e) {
            System.err.println("KappaSearchNode: " + e.getMessage());
            System.err.println("usage: KappaSearchNode --home DIR --http-port N"
                    + " --transport-port N [--cluster-name NAME]");
            System.exit(2);
            return;
        }

        final OpenSearchRunner runner = new OpenSearchRunner();
        final CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            closeQuietly(runner);
            closed.countDown();
        }, "kappa-search-shutdown"));

        try {
            start(runner, opts);
            verifyPorts(runner, opts);
            applyClusterDefaults(runner);
        } catch (final Throwable t) {
            System.err.println("KappaSearchNode: FAILED to start OpenSearch: " + t);
            t.printStackTrace();
            // Halt: a half-started node can keep non-daemon threads alive.
            closeQuietly(runner);
            Runtime.getRuntime().halt(1);
        }

        System.out.println("KAPPA_SEARCH_READY http://127.0.0.1:" + opts.httpPort);
        System.out.flush();
        try {
            closed.await(); // until SIGTERM/SIGINT runs the shutdown hook
        } catch (final InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void start(final OpenSearchRunner runner, final Options opts)
            throws IOException {
        final Path home = Paths.get(opts.home).toAbsolutePath();
        final Path conf = home.resolve("config");
        Files.createDirectories(conf);
        // The runner copies its own configs only when these are absent.
        Files.write(conf.resolve("log4j2.properties"),
                LOG4J2.getBytes(StandardCharsets.UTF_8));
        Files.write(conf.resolve("opensearch.yml"),
                "# written by KappaSearchNode; settings are passed in code\n"
                        .getBytes(StandardCharsets.UTF_8));

        runner.setMaxHttpPort(-1); // no port probing: we pass http.port
        runner.onBuild((number, settings) -> {
            settings.put("http.port", String.valueOf(opts.httpPort));
            settings.put("transport.port", String.valueOf(opts.transportPort));
            settings.put("network.host", "127.0.0.1");
            settings.put("discovery.type", "single-node");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
            settings.put("node.name", "kappa-dev");
            settings.put("path.repo", home.resolve("repo").toString());
        });
        runner.build("-basePath", home.toString(),
                "-confPath", conf.toString(),
                "-numOfNode", "1",
                "-clusterName", opts.clusterName,
                "-printOnFailure");
        if (runner.getNodeSize() != 1) {
            throw new IllegalStateException("node did not start");
        }
    }

    /** Fail unless HTTP and transport are bound exactly where we asked. */
    private static void verifyPorts(final OpenSearchRunner runner, final Options opts) {
        final var http = runner.getInstance(HttpServerTransport.class).boundAddress();
        for (final var address : http.boundAddresses()) {
            if (address.getPort() != opts.httpPort) {
                throw new IllegalStateException("HTTP bound to " + address
                        + " instead of port " + opts.httpPort);
            }
        }
        if (http.publishAddress().getPort() != opts.httpPort) {
            throw new IllegalStateException("HTTP published on " + http.publishAddress()
                    + " instead of port " + opts.httpPort);
        }
        final var transport = runner.getInstance(TransportService.class).boundAddress();
        for (final var address : transport.boundAddresses()) {
            if (address.getPort() != opts.transportPort) {
                throw new IllegalStateException("transport bound to " + address
                        + " instead of port " + opts.transportPort);
            }
        }
    }

    /**
     * Index defaults for a one-node cluster. cluster.default_number_of_replicas
     * is read from the cluster metadata, not from node settings, so it has to
     * be stored as a persistent cluster setting.
     */
    private static void applyClusterDefaults(final OpenSearchRunner runner) {
        final boolean ok = runner.client().admin().cluster().prepareUpdateSettings()
                .setPersistentSettings(Settings.builder()
                        .put("cluster.default_number_of_replicas", 0))
                .get().isAcknowledged();
        if (!ok) {
            throw new IllegalStateException("cluster settings update not acknowledged");
        }
    }

    private static void closeQuietly(final OpenSearchRunner runner) {
        try {
            if (!runner.isClosed()) {
                runner.close();
            }
        } catch (final Throwable t) {
            System.err.println("KappaSearchNode: error while closing: " + t);
        }
    }

    /** Command-line options. */
    private static final class Options {
        String home;
        int httpPort;
        int transportPort;
        String clusterName = "kappa-dev";

        static Options parse(final String[] args) {
            final Options o = new Options();
            for (int i = 0; i < args.length; i++) {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("missing value for " + args[i]);
                }
                final String value = args[++i];
                switch (args[i - 1]) {
                    case "--home": o.home = value; break;
                    case "--http-port": o.httpPort = port(value); break;
                    case "--transport-port": o.transportPort = port(value); break;
                    case "--cluster-name": o.clusterName = value; break;
                    default: throw new IllegalArgumentException("unknown option " + args[i - 1]);
                }
            }
            if (o.home == null || o.httpPort == 0 || o.transportPort == 0) {
                throw new IllegalArgumentException("--home, --http-port and --transport-port are required");
            }
            return o;
        }

        private static int port(final String s) {
            try {
                final int p = Integer.parseInt(s);
                if (p > 0 && p < 65536) {
                    return p;
                }
            } catch (final NumberFormatException e) {
                // fall through
            }
            throw new IllegalArgumentException("invalid port " + s);
        }
    }
}
