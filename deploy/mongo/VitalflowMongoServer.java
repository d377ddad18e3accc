import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Supplier;
import java.util.stream.Stream;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;
import org.h2.mvstore.WriteBuffer;
import org.h2.mvstore.type.BasicDataType;
import org.h2.mvstore.type.DataType;
import org.h2.mvstore.type.ObjectDataType;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.ArrayFilters;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.KeyValue;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.bson.ObjectId;
import de.bwaldvogel.mongo.oplog.Oplog;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.wire.bson.BsonDecoder;
import de.bwaldvogel.mongo.wire.bson.BsonEncoder;
import de.bwaldvogel.mongo.wire.message.MongoMessage;
import de.bwaldvogel.mongo.wire.message.MongoQuery;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;

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
 *
 * <p>What it mends in mongo-java-server 1.47 (each class says why, with what was measured):
 * <ul>
 * <li>{@link IndexChangesAlone}: index and collection changes never overlap other commands;
 * <li>{@link IdFirstCollection} (H2): a query naming an {@code _id} uses the {@code _id} index
 * whatever else it says, what an exact lookup found is not matched on {@code _id} again, and
 * an update changes a copy of a document, never the one the store holds, and documents are
 * stored in the order they came, not by {@code _id};
 * <li>{@link IdFirstCollection} (H2): a collection's size is counted when {@code collStats}
 * asks, not by encoding every document written again;
 * <li>{@link BsonDocumentType} (H2): documents stored as BSON, not with Java serialization;
 * <li>{@link IndexKeyType} (H2): unique-index keys compared without serializing them at each
 * step.
 * </ul>
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
        // Before any Netty class loads (they read these once). Every BSON byte the server
        // writes, to clients and to the store, goes through ByteBuf.writeByte, and these
        // checks made each write re-read the buffer's reference count and capacity: in a JFR
        // profile of the pipeline benchmark the two were the top self frames, ~23 % of the
        // server's samples. They guard against misuse of released or pooled buffers, which
        // mongo-java-server's code paths, tested upstream, do not rely on. Set only when the
        // operator has not chosen otherwise (-D on the command line wins).
        System.getProperties().putIfAbsent("io.netty.buffer.checkAccessible", "false");
        System.getProperties().putIfAbsent("io.netty.buffer.checkBounds", "false");
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
                backend = new MendedH2Backend(store);
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

        MongoServer server = new MongoServer(new IndexChangesAlone(backend));
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

    /**
     * A backend whose index and collection changes never overlap another command.
     *
     * <p>Why: mongo-java-server 1.47 keeps a collection's indexes in a plain ArrayList that every
     * find, insert and update iterates without a lock, so a {@code createIndexes} arriving while
     * they run (the API creates its history indexes in the background while the flow writes)
     * fails them with a ConcurrentModificationException, which clients see as
     * "Unknown error: null". Measured before this: 75 of 6,754 finds and inserts failed in 10 s
     * beside a loop of createIndexes/dropIndexes; tests/integration/test_mongo_index_changes.py
     * repeats that. Every other command shares a read lock, so they still run in parallel.
     */
    static final class IndexChangesAlone implements MongoBackend {

        /** Commands (lower case, as MongoDB matches them) that change a collection's indexes. */
        private static final Set<String> CHANGES = Set.of(
                "createindexes", "dropindexes", "deleteindexes", "drop", "dropdatabase",
                "renamecollection", "create");

        private final MongoBackend backend;
        private final ReadWriteLock lock = new ReentrantReadWriteLock();

        IndexChangesAlone(MongoBackend backend) {
            this.backend = backend;
        }

        private <T> T locked(String command, Supplier<T> call) {
            Lock held = CHANGES.contains(command.toLowerCase(Locale.ROOT))
                    ? lock.writeLock() : lock.readLock();
            held.lock();
            try {
                return call.get();
            } finally {
                held.unlock();
            }
        }

        @Override
        public Document handleCommand(Channel channel, String database, String command, Document query) {
            return locked(command, () -> backend.handleCommand(channel, database, command, query));
        }

        @Override
        public Document handleMessage(MongoMessage message) {
            String command = message.getDocument().keySet().iterator().next();
            return locked(command, () -> backend.handleMessage(message));
        }

        @Override
        public QueryResult handleQuery(MongoQuery query) {
            return locked("find", () -> backend.handleQuery(query));
        }

        @Override
        public void dropDatabase(String database) {
            locked("dropDatabase", () -> {
                backend.dropDatabase(database);
                return null;
            });
        }

        @Override
        public void handleClose(Channel channel) {
            backend.handleClose(channel);
        }

        @Override
        public Collection<Document> getCurrentOperations(MongoQuery query) {
            return backend.getCurrentOperations(query);
        }

        @Override
        public Document getServerStatus() {
            return backend.getServerStatus();
        }

        @Override
        public void close() {
            backend.close();
        }

        @Override
        public void closeCursors(List<Long> cursorIds) {
            backend.closeCursors(cursorIds);
        }

        @Override
        public Clock getClock() {
            return backend.getClock();
        }

        @Override
        public void enableOplog() {
            backend.enableOplog();
        }

        @Override
        public void disableOplog() {
            backend.disableOplog();
        }

        @Override
        public MongoDatabase resolveDatabase(String database) {
            return backend.resolveDatabase(database);
        }

        @Override
        public MongoBackend version(MongoVersion version) {
            backend.version(version);
            return this;
        }
    }

    /**
     * H2 backend whose databases open {@link IdFirstCollection}s with {@link BsonDocumentType}
     * values and {@link IndexKeyType} index keys.
     *
     * <p>H2Database opens its collections from inside its constructor, before a subclass's
     * fields are set, so the one store of this process is reached through {@link #STORE}.
     */
    static final class MendedH2Backend extends H2Backend {

        private static MVStore STORE;

        MendedH2Backend(MVStore store) {
            super(remember(store));
        }

        private static MVStore remember(MVStore store) {
            STORE = store;
            return store;
        }

        @Override
        protected MongoDatabase openOrCreateDatabase(String databaseName) {
            return new MendedH2Database(databaseName, STORE, getCursorRegistry());
        }
    }

    /** H2Database opening the mended collections and indexes on the maps it would use itself. */
    static final class MendedH2Database extends H2Database {

        MendedH2Database(String databaseName, MVStore store, CursorRegistry cursorRegistry) {
            super(databaseName, store, cursorRegistry);
        }

        @Override
        protected Index<Object> openOrCreateUniqueIndex(String collectionName, String indexName,
                List<IndexKey> keys, boolean sparse) {
            // H2Database opens the index's map by name with H2's default types; opened here
            // first with IndexKeyType, the same name gives this map back to it.
            String name = getFullCollectionNamespace(collectionName) + "._index_" + indexName;
            MendedH2Backend.STORE.openMap(name,
                    new MVMap.Builder<Object, Object>().keyType(IndexKeyType.INSTANCE));
            return super.openOrCreateUniqueIndex(collectionName, indexName, keys, sparse);
        }

        @Override
        protected MongoCollection<Object> openOrCreateCollection(String collectionName,
                CollectionOptions options) {
            // The map names of H2Database 1.47 ("databases." and "meta." + namespace), so files
            // written by the plain backend open unchanged (not the other way round: once
            // written here, documents are BSON, which the plain backend cannot read).
            String namespace = getFullCollectionNamespace(collectionName);
            MVMap<Object, Document> dataMap = MendedH2Backend.STORE.openMap("databases." + namespace,
                    new MVMap.Builder<Object, Document>().valueType(BsonDocumentType.INSTANCE));
            MVMap<String, Object> metaMap = MendedH2Backend.STORE.openMap("meta." + namespace);
            return new IdFirstCollection(this, collectionName, options, dataMap, metaMap, cursorRegistry);
        }
    }

    /**
     * A collection that answers a query naming one {@code _id} (or an {@code $in} of them) from
     * the {@code _id} index, whatever else the query says, and does not match again what the
     * index already matched.
     *
     * <p>Why: mongo-java-server 1.47 uses an index only when the query's fields are exactly the
     * index's, so {@code {_id: p, "last_vitals.bp.measured_at": t}} (the flow's guarded update
     * of a patient) scanned the whole collection: every guarded update cost a pass over all
     * patients. MongoDB plans such a query on the {@code _id} index; so does this. The other
     * conditions are still matched on the documents found, exactly as in a scan.
     *
     * <p>And it matched every document the index found against the whole query again,
     * {@code _id} included: for {@code {_id: {$in: [k1..kn]}}} that is a linear pass over the n
     * values per document found, n&sup2; comparisons through {@code Utils.nullAwareEquals} (a
     * stream per call). The flow's batched lookups ask for up to a batch's worth of ids: a
     * {@code $in} of 1,000 patients took 64 ms of the server's CPU (bench: README "The
     * store"). An exact index lookup of plain values finds exactly the documents whose
     * {@code _id} equals one of them, so only the other conditions are matched.
     */
    static final class IdFirstCollection extends H2Collection {

        private final MVMap<Object, Document> documents;

        /**
         * Where the next document goes in the data map: documents are stored in the order they
         * came, and found by {@code _id} through the {@code _id} index, as MongoDB does.
         *
         * <p>Why: upstream keys the data map by {@code _id}. The flow's observation ids are
         * digests, so every insert landed on a random page of the map, and MVStore rewrites
         * (serialises again) every page that changed at each commit: one insert cost a page's
         * worth of documents. Measured on a collection of 30,000 observations, batches of
         * 1,600: 0.40-0.47 ms of the server's CPU per insert with random ids, 0.05-0.06 with
         * ids in order; with positions in order, any ids cost the latter (README "The store").
         * Documents an earlier launcher stored stay under their {@code _id} (the index holds
         * whatever position a document has); new positions start after the largest one in use.
         */
        private final AtomicLong nextPosition;

        IdFirstCollection(MongoDatabase database, String collectionName, CollectionOptions options,
                MVMap<Object, Document> dataMap, MVMap<String, Object> metaMap,
                CursorRegistry cursorRegistry) {
            super(database, collectionName, options, dataMap, metaMap, cursorRegistry);
            this.documents = dataMap;
            // H2's key order puts every Long after the types before it and before strings, so
            // the greatest key up to Long.MAX_VALUE is the last position given, if any.
            Object last = dataMap.floorKey(Long.MAX_VALUE);
            this.nextPosition = new AtomicLong(last instanceof Long position ? position + 1 : 0);
        }

        @Override
        protected Object addDocumentInternal(Document document) {
            if (getIdField() == null) {
                return super.addDocumentInternal(document);
            }
            Long position = nextPosition.getAndIncrement();
            Document previous = documents.putIfAbsent(position, document);
            if (previous != null) {
                throw new IllegalStateException("position " + position + " of " + this
                        + " is taken: not storing over " + previous.get(getIdField()));
            }
            return position;
        }

        /**
         * The collection's size in BSON is counted when asked ({@code collStats}), not kept up
         * to date by every write.
         *
         * <p>Why: upstream encodes a document to BSON only to learn its size on every insert,
         * and twice on every update (the old and the new version), then writes the running
         * total to the collection's meta map: 12 % of the server's CPU samples (JFR) in the
         * pipeline benchmark at 1,000 msg/s, for a figure nothing of vitalflow's reads. Counted
         * on demand, {@code collStats} still answers right, by a scan of the collection.
         */
        @Override
        protected boolean tracksDataSize() {
            return false;
        }

        @Override
        protected int getDataSize() {
            if (documents == null) {
                // Called by H2Collection's constructor (a debug line) before this class is set
                // up: what an earlier launcher kept, as it was.
                return super.getDataSize();
            }
            long total = 0;
            ByteBuf bson = Unpooled.buffer();
            try {
                for (Document document : documents.values()) {
                    bson.clear();
                    BsonEncoder.encodeDocument(document, bson);
                    total += bson.readableBytes();
                }
            } finally {
                bson.release();
            }
            return (int) Math.min(total, Integer.MAX_VALUE);
        }

        @Override
        protected QueryResult queryDocuments(Document query, Document orderBy, int numberToSkip,
                int limit, int batchSize, Document fieldSelector) {
            String idField = getIdField();
            if (idField != null && query.containsKey(idField)) {
                Object condition = query.get(idField);
                Document byId = new Document(idField, condition);
                for (Index<Object> index : getIndexes()) {
                    if (index.canHandle(byId)) {
                        Document rest = query;
                        if (exactLookup(condition)) {
                            rest = new Document(query);
                            rest.remove(idField);
                        }
                        return matchDocuments(rest, index.getPositions(byId), orderBy, numberToSkip,
                                limit, batchSize, fieldSelector);
                    }
                }
            }
            return super.queryDocuments(query, orderBy, numberToSkip, limit, batchSize, fieldSelector);
        }

        /**
         * Documents read while this thread runs an update are private copies.
         *
         * <p>Why: mongo-java-server 1.47 applies an update to the very {@code Document} the
         * H2 map holds (removing and putting its keys), and MVStore serialises the pages of
         * the last commit in a background thread meanwhile: an update that adds or removes a
         * field (a device's status gaining {@code battery}, say) while the page holding the
         * previous version is being written threw a ConcurrentModificationException in that
         * thread, and MVStore then closes the store: every later command failed with "This
         * store is closed" until a restart (seen in the pipeline benchmark; reproduced by
         * {@code tests/integration/test_mongo_in_place_updates.py}, 22,296 of 25,396 updates
         * failed in 30 s). A reply being encoded could meet the same change. With a copy, the
         * update changes a document no one else sees and puts it in the map as a new value;
         * what the map held before is never changed again.
         */
        private static final ThreadLocal<Boolean> UPDATING = ThreadLocal.withInitial(() -> false);

        @Override
        public Document updateDocuments(Document selector, Document updateQuery,
                ArrayFilters arrayFilters, boolean isMulti, boolean isUpsert, Oplog oplog) {
            return whileUpdating(() -> super.updateDocuments(selector, updateQuery, arrayFilters,
                    isMulti, isUpsert, oplog));
        }

        @Override
        public Document findAndModify(Document query) {
            return whileUpdating(() -> super.findAndModify(query));
        }

        private static <T> T whileUpdating(Supplier<T> update) {
            boolean outer = UPDATING.get();
            UPDATING.set(true);
            try {
                return update.get();
            } finally {
                UPDATING.set(outer);
            }
        }

        @Override
        protected QueryResult matchDocumentsFromStream(Document query, Stream<Document> documents,
                int numberToSkip, int limit, int batchSize, Comparator<Document> comparator,
                Document fieldSelector) {
            Stream<Document> found = documents;
            if (UPDATING.get()) {
                // Only what matches is copied (a scan reads many more than it updates).
                found = documents.filter(d -> documentMatchesQuery(d, query))
                        .map(Document::cloneDeeply);
            }
            return super.matchDocumentsFromStream(query, found, numberToSkip, limit, batchSize,
                    comparator, fieldSelector);
        }

        /** Whether the index answers {@code condition} by exact lookups of plain values. */
        private static boolean exactLookup(Object condition) {
            if (condition instanceof Document document) {
                if (document.size() != 1 || !(document.get("$in") instanceof Collection<?> values)) {
                    return false;
                }
                return values.stream().allMatch(IdFirstCollection::plain);
            }
            return plain(condition);
        }

        private static boolean plain(Object value) {
            // Strings, numbers, ObjectIds, UUIDs: what the index compares exactly as the matcher
            // does. Not null, documents, arrays or regular expressions, which the matcher treats
            // otherwise (a missing field, sub-document rules, element matches, patterns).
            return value instanceof String || value instanceof Number || value instanceof ObjectId
                    || value instanceof java.util.UUID;
        }
    }

    /**
     * Documents in the H2 store as BSON, read back as BSON or, for a value an earlier launcher
     * wrote, as H2's default Java serialization.
     *
     * <p>Why: H2's default value type writes a Document with ObjectOutputStream, and MVStore
     * rewrites every value of a changed page at each commit; in the pipeline benchmark that
     * serialisation was about half of the server's CPU (JFR: ObjectOutputStream frames in
     * 33 % of samples, the top 15 self frames all java.io). BSON is what the server decodes
     * from and encodes to its clients anyway, so every stored type round-trips. A BSON value
     * starts with {@link #MARKER}, a byte H2's own type tags (0..127) never use, so files
     * written before open unchanged and are rewritten as BSON as their pages change.
     */
    static final class BsonDocumentType extends BasicDataType<Document> {

        static final BsonDocumentType INSTANCE = new BsonDocumentType();

        private static final byte MARKER = (byte) 0xB5;

        private final ObjectDataType legacy = new ObjectDataType();

        /** Running mean of the encoded sizes. */
        private volatile int averageSize = 512;

        /**
         * What a Document costs in memory per byte of its BSON: MVStore sizes its page cache
         * (and its pages) with getMemory. A decoded Document (maps, boxed values) takes several
         * times its BSON; estimating with the BSON size alone let the cache hold far more than
         * its budget, and the 512 MB heap ran out while the history benchmark scanned 100,000
         * readings. H2's own type estimated with the Java-serialised size, about twice the BSON.
         */
        private static final int MEMORY_PER_BSON_BYTE = 4;

        private BsonDocumentType() {
        }

        @Override
        public int getMemory(Document document) {
            return averageSize * MEMORY_PER_BSON_BYTE;
        }

        @Override
        public void write(WriteBuffer buffer, Document document) {
            ByteBuf bson = Unpooled.buffer(averageSize + 64);
            try {
                BsonEncoder.encodeDocument(document, bson);
                int size = bson.readableBytes();
                buffer.put(MARKER).put(bson.nioBuffer());
                averageSize = (averageSize * 15 + size) / 16;
            } finally {
                bson.release();
            }
        }

        @Override
        public Document read(ByteBuffer buffer) {
            if (buffer.get(buffer.position()) != MARKER) {
                return (Document) legacy.read(buffer);
            }
            buffer.get();
            int size = buffer.duplicate().order(ByteOrder.LITTLE_ENDIAN).getInt();
            byte[] bytes = new byte[size];
            buffer.get(bytes);
            return BsonDecoder.decodeBson(Unpooled.wrappedBuffer(bytes));
        }

        @Override
        public Document[] createStorage(int size) {
            return new Document[size];
        }
    }

    /**
     * The keys of a unique index's map: H2's default type, with the same order, found faster.
     *
     * <p>Why: a KeyValue is not Comparable, so H2 orders such keys by their Java-serialised
     * bytes and serialises both sides of every comparison; each `_id` lookup (every insert
     * checks one) serialised about 2 log2(n) keys. In the pipeline benchmark that was ~40 % of
     * the server's CPU (JFR: SerializedObjectType.compare under H2UniqueIndex.getPosition).
     * This type compares the very same bytes, remembered per key, so the order on disk is
     * unchanged and files written by the plain backend open as they are. Keys of other types,
     * and KeyValues holding anything but plain scalars, are left to H2.
     */
    static final class IndexKeyType implements DataType<Object> {

        static final IndexKeyType INSTANCE = new IndexKeyType();

        /**
         * Bound on remembered keys: past it the memory is dropped and refilled as used. Pages
         * are written with every key they hold, so this is sized for a few hundred thousand
         * readings' keys (~100 bytes each, the heap is 1.5 GB).
         */
        private static final int REMEMBERED = 200_000;

        /** H2's ObjectDataType tag of a Java-serialized value (TYPE_SERIALIZED_OBJECT). */
        private static final int SERIALIZED_OBJECT = 19;

        private final ObjectDataType h2 = new ObjectDataType();
        private final ConcurrentHashMap<KeyValue, byte[]> serialized = new ConcurrentHashMap<>();

        private IndexKeyType() {
        }

        private static boolean plain(KeyValue key) {
            for (Object value : key) {
                if (!(value instanceof String || value instanceof Integer || value instanceof Long
                        || value instanceof Double || value instanceof Boolean
                        || value instanceof ObjectId)) {
                    return false;
                }
            }
            return true;
        }

        private byte[] bytes(KeyValue key) {
            if (!plain(key)) {
                return ObjectDataType.serialize(key);
            }
            byte[] known = serialized.get(key);
            if (known == null) {
                if (serialized.size() >= REMEMBERED) {
                    serialized.clear();
                }
                known = ObjectDataType.serialize(key);
                serialized.put(key, known);
            }
            return known;
        }

        @Override
        public int compare(Object a, Object b) {
            if (a == b) {
                return 0;
            }
            if (a instanceof KeyValue ka && b instanceof KeyValue kb) {
                return ObjectDataType.compareNotNull(bytes(ka), bytes(kb));
            }
            return h2.compare(a, b);
        }

        @Override
        public int binarySearch(Object key, Object storage, int size, int initialGuess) {
            // BasicDataType's search, with this type's compare (H2's would use its own), the
            // probe's bytes looked up once rather than at each step (a map lookup each: the
            // top frames of the server's samples, JFR, after the bytes were remembered).
            Object[] keys = (Object[]) storage;
            byte[] probe = key instanceof KeyValue kv ? bytes(kv) : null;
            int low = 0;
            int high = size - 1;
            int x = initialGuess - 1;
            if (x < 0 || x > high) {
                x = high >>> 1;
            }
            while (low <= high) {
                Object other = keys[x];
                int c = probe != null && other instanceof KeyValue ko
                        ? ObjectDataType.compareNotNull(probe, bytes(ko))
                        : compare(key, other);
                if (c > 0) {
                    low = x + 1;
                } else if (c < 0) {
                    high = x - 1;
                } else {
                    return x;
                }
                x = (low + high) >>> 1;
            }
            return ~low;
        }

        @Override
        public int getMemory(Object key) {
            return h2.getMemory(key);
        }

        @Override
        public boolean isMemoryEstimationAllowed() {
            return h2.isMemoryEstimationAllowed();
        }

        @Override
        public void write(WriteBuffer buffer, Object key) {
            if (key instanceof KeyValue kv) {
                // H2 writes any KeyValue with its SerializedObjectType, exactly this (type 19,
                // length, the Java serialization); `bytes` gives the remembered bytes of a
                // plain key, so a page's keys are not serialized again each time MVStore
                // rewrites the page (every commit that changed it): that was ~14 % of the
                // server's samples in the benchmark. Other keys are serialized as H2 would.
                byte[] data = bytes(kv);
                buffer.put((byte) SERIALIZED_OBJECT).putVarInt(data.length).put(data);
            } else {
                h2.write(buffer, key);
            }
        }

        @Override
        public void write(WriteBuffer buffer, Object storage, int len) {
            Object[] keys = (Object[]) storage;
            for (int i = 0; i < len; i++) {
                write(buffer, keys[i]);
            }
        }

        @Override
        public Object read(ByteBuffer buffer) {
            return h2.read(buffer);
        }

        @Override
        public void read(ByteBuffer buffer, Object storage, int len) {
            h2.read(buffer, storage, len);
        }

        @Override
        public Object[] createStorage(int size) {
            return h2.createStorage(size);
        }
    }
}
