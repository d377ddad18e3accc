import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.h2.mvstore.MVStore;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

/**
 * vitalflow's local MongoDB-wire server: mongo-java-server on its H2 (MVStore) file backend.
 *
 * <p>Usage: {@code java -cp 'LIBS/*:CLASSES' VitalflowMongoServer --listen HOST:PORT --data DIR
 * [--backend h2|memory] [--commit-interval-ms N]}
 *
 * <p>Why a launcher of our own: mongo-java-server's backends report MongoDB 5.0 with wire
 * version 8, which PyMongo 4.18+ refuses; this one reports 4.4 / wire 9, the lowest PyMongo
 * accepts (the commands vitalflow sends are the same). The H2 store lives in
 * {@code DIR/vitalflow.mv.db}; MVStore writes what changed in the background every
 * {@code --commit-interval-ms} (default 200), so a SIGKILL loses at most about that much
 * acknowledged work. SIGTERM/SIGINT stop it cleanly: the listener closes, clients are
 * disconnected, and the store is committed, synced and closed before the JVM exits.
 */
public final class VitalflowMongoServer {

    /** MongoDB 4.4: wire version 9. */
    private static final MongoVersion MONGO_4_4 = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 4, 0);
        }

        @Override
        public int getWireVersion() {
            return 9;
        }
    };

    private VitalflowMongoServer() {
    }

    private static void usage(String problem) {
        System.err.println("VitalflowMongoServer: " + problem);
        System.err.println("usage: VitalflowMongoServer --listen HOST:PORT --data DIR"
                + " [--backend h2|memory] [--commit-interval-ms N]");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        String listen = "127.0.0.1:27017";
        String data = null;
        String backendName = "h2";
        int commitIntervalMs = 200;
        for (int i = 0; i < args.length; i++) {
            String value = i + 1 < args.length ? args[i + 1] : null;
            switch (args[i]) {
                case "--listen" -> listen = value;
                case "--data" -> data = value;
                case "--backend" -> backendName = value;
                case "--commit-interval-ms" -> commitIntervalMs = Integer.parseInt(value);
                default -> usage("unknown argument " + args[i]);
            }
            if (value == null) {
                usage(args[i] + " needs a value");
            }
            i++;
        }
        int colon = listen.lastIndexOf(':');
        if (colon < 0) {
            usage("--listen must be HOST:PORT, not " + listen);
        }
        String host = listen.substring(0, colon);
        int port = Integer.parseInt(listen.substring(colon + 1));

        MongoBackend backend;
        String where;
        switch (backendName) {
            case "h2" -> {
                if (data == null) {
                    usage("the h2 backend needs --data DIR");
                }
                Path dir = Files.createDirectories(Path.of(data));
                Path file = dir.resolve("vitalflow.mv.db").toAbsolutePath();
                MVStore store = new MVStore.Builder().fileName(file.toString()).open();
                store.setAutoCommitDelay(commitIntervalMs);
                backend = new H2Backend(store);
                where = file + ", committed every " + commitIntervalMs + " ms";
            }
            case "memory" -> {
                backend = new MemoryBackend();
                where = "memory (nothing survives a restart)";
            }
            default -> {
                usage("unknown backend " + backendName);
                return;
            }
        }
        backend.version(MONGO_4_4);

        MongoServer server = new MongoServer(backend);
        Thread stopper = new Thread(() -> {
            System.err.println("VitalflowMongoServer: stopping (closing clients and the store)");
            server.shutdownNow();  // closes the backend: H2 commits and syncs its file
            System.err.println("VitalflowMongoServer: stopped");
        }, "vitalflow-mongo-shutdown");
        Runtime.getRuntime().addShutdownHook(stopper);
        server.bind(host, port);
        System.err.println("VitalflowMongoServer: mongo-java-server (" + backendName + ") listening on "
                + host + ":" + port + " as MongoDB " + MONGO_4_4.toVersionString()
                + " (wire " + MONGO_4_4.getWireVersion() + "), data in " + where);
    }
}
