package dev.causeway.bench;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Inventory aggregate of domains/orders as a Kafka Streams application: the baseline `make bench`
 * measures the aggregate processor against. Same logic as domains/orders/src/inventory.rs and the
 * processor's tracking (crates/core/src/tracked.rs): AddStock, ReserveStock, ReleaseReservation and
 * CommitReservation with the same rules and rejection reasons, command-id dedup over the same window
 * (100 commands, 7 days, 64 KiB), the expected-version check. Exactly-once v2, one persistent
 * (RocksDB) store with its changelog holding the same InventoryState record the processor writes.
 *
 * Commands are read in the Confluent wire format (magic byte, schema id, Avro datum) through the
 * schema registry; events and results are written the same way, with the ids the registry gives the
 * contracts under the source context's subjects. A record that cannot be read as a command is
 * counted and skipped (the processor dead-letters it; the baseline measures the happy path).
 *
 * Prints `STATE <state>` on each state change and `RESTORED <records> <ms>` when the store's
 * restoration ends, on stdout, for the bench to follow.
 */
public final class InventoryStreams {
    static final String STORE = "inventory";
    static final int MAX_COMMANDS = 100;
    static final long MAX_AGE_MS = 7L * 24 * 3600 * 1000;
    static final int MAX_BYTES = 64 * 1024;
    static final int MAX_REASON_BYTES = 1024;
    static final int MAX_UNITS = 1_000_000_000;

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = parse(args);
        String bootstrap = required(opts, "bootstrap");
        String registry = required(opts, "registry");
        String context = required(opts, "context");
        String commands = opts.getOrDefault("commands", context + ".inventory.commands");
        String events = required(opts, "events");
        String results = required(opts, "results");

        Contracts contracts = Contracts.fetch(registry, context);

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, required(opts, "application-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.STATE_DIR_CONFIG, required(opts, "state-dir"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, opts.getOrDefault("threads", "1"));
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, "1");
        if (opts.containsKey("instance")) {
            // Static membership, as the processor has: a restart keeps its partitions.
            props.put(StreamsConfig.consumerPrefix("group.instance.id"), opts.get("instance"));
        }

        Topology topology = new Topology();
        topology.addSource("commands", Serdes.ByteArray().deserializer(), Serdes.ByteArray().deserializer(), commands);
        topology.addProcessor("inventory", () -> new InventoryProcessor(contracts), "commands");
        topology.addStateStore(
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.ByteArray())
                        // The record cache the DSL's stores have by default: a state changed several
                        // times between commits is written to RocksDB and the changelog once.
                        .withCachingEnabled(),
                "inventory");
        topology.addSink("events", events, Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "inventory");
        topology.addSink("results", results, Serdes.ByteArray().serializer(), Serdes.ByteArray().serializer(), "inventory");

        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        streams.setGlobalStateRestoreListener(new Restoration());
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("stream thread failed: " + e);
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            done.countDown();
        }));
        streams.start();
        // The bench holds our stdin: when it goes away (even killed), so does this instance.
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // Nothing is sent; wait for the end.
                }
            } catch (IOException e) {
                // Closed: stop.
            }
            done.countDown();
        });
        stdin.setDaemon(true);
        stdin.start();
        done.await();
        streams.close(Duration.ofSeconds(30));
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }

    static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --name value, got " + args[i]);
            }
            opts.put(args[i].substring(2), args[i + 1]);
        }
        return opts;
    }

    static String required(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            System.err.println("usage: InventoryStreams --bootstrap host:port --registry url --context ctx "
                    + "--events topic --results topic --application-id id --state-dir dir "
                    + "[--commands topic] [--threads n] [--instance id]; missing --" + name);
            System.exit(2);
        }
        return v;
    }

    /** Counts restored records over every store partition and prints the total once all are done. */
    static final class Restoration implements StateRestoreListener {
        final AtomicLong records = new AtomicLong();
        final AtomicLong open = new AtomicLong();
        volatile long began;

        @Override
        public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
            if (open.getAndIncrement() == 0 && began == 0) {
                began = System.nanoTime();
            }
        }

        @Override
        public void onBatchRestored(TopicPartition tp, String store, long end, long n) {
            records.addAndGet(n);
        }

        @Override
        public void onRestoreEnd(TopicPartition tp, String store, long total) {
            if (open.decrementAndGet() == 0) {
                System.out.println("RESTORED " + records.get() + " " + (System.nanoTime() - began) / 1_000_000);
                System.out.flush();
            }
        }
    }

    /** The record schemas and their registry ids. */
    static final class Contracts {
        final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        final ObjectMapper json = new ObjectMapper();
        final String registry;
        final Map<Integer, Schema> writers = new ConcurrentHashMap<>();
        final Map<String, Integer> ids = new HashMap<>();
        final Map<String, Schema> schemas = new HashMap<>();

        Contracts(String registry) {
            this.registry = registry.replaceAll("/+$", "");
        }

        static Contracts fetch(String registry, String context) throws Exception {
            Contracts c = new Contracts(registry);
            String ns = "causeway.orders.inventory.";
            for (String event : List.of("StockAdded", "StockReserved", "ReservationReleased", "ReservationCommitted")) {
                c.latest(context + ".inventory.events-" + ns + event, ns + event);
            }
            c.latest(context + ".inventory.changelog-" + ns + "InventoryState", ns + "InventoryState");
            c.latest(context + ".command-results-causeway.CommandResult", "causeway.CommandResult");
            return c;
        }

        void latest(String subject, String fullName) throws Exception {
            JsonNode body = get("/subjects/" + URLEncoder.encode(subject, StandardCharsets.UTF_8) + "/versions/latest");
            Schema schema = new Schema.Parser().parse(body.get("schema").asText());
            ids.put(fullName, body.get("id").asInt());
            schemas.put(fullName, schema);
        }

        JsonNode get(String path) throws IOException, InterruptedException {
            HttpRequest request = HttpRequest.newBuilder(URI.create(registry + path)).timeout(Duration.ofSeconds(10)).build();
            HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() != 200) {
                throw new IOException("GET " + path + " answered " + response.statusCode() + ": " + response.body());
            }
            return json.readTree(response.body());
        }

        /** The writer schema of a record id (null when the registry does not know it). */
        Schema writer(int id) {
            return writers.computeIfAbsent(id, i -> {
                try {
                    return new Schema.Parser().parse(get("/schemas/ids/" + i).get("schema").asText());
                } catch (IOException e) {
                    throw new IllegalStateException("schema " + i + ": " + e.getMessage(), e);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            });
        }

        Schema schema(String fullName) {
            return schemas.get(fullName);
        }
    }

    /**
     * A remembered command: its id, when, and its outcome (version, or code and reason), with its
     * weight in the window's byte bound (its strings' UTF-8 bytes plus 24), computed once.
     */
    record Seen(String commandId, long atMs, Long newVersion, String code, String reason, int weight) {
        static Seen of(String commandId, long atMs, Long newVersion, String code, String reason) {
            int strings = newVersion != null ? 0 : utf8(code) + utf8(reason);
            return new Seen(commandId, atMs, newVersion, code, reason, utf8(commandId) + strings + 24);
        }
    }

    static int utf8(String s) {
        return s == null ? 0 : s.getBytes(StandardCharsets.UTF_8).length;
    }

    /** A SKU's stock with its version and recent commands (the InventoryState record). */
    static final class State {
        long version;
        int available;
        TreeMap<String, Integer> reservations = new TreeMap<>();
        Deque<Seen> recent = new ArrayDeque<>();
    }

    /** An event to write: its record name and its fields beyond the metadata. */
    record Event(String name, int quantity, Integer available, String orderId) {
    }

    static final class Rejected extends Exception {
        final String code;

        Rejected(String code, String reason) {
            super(reason, null, false, false);
            this.code = code;
        }
    }

    static final class InventoryProcessor implements Processor<byte[], byte[], byte[], byte[]> {
        final Contracts contracts;
        final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
        final Map<String, GenericDatumWriter<GenericRecord>> writers = new HashMap<>();
        final ByteArrayOutputStream out = new ByteArrayOutputStream(512);
        BinaryDecoder decoder;
        BinaryEncoder encoder;
        ProcessorContext<byte[], byte[]> context;
        KeyValueStore<String, byte[]> store;
        long skipped;

        InventoryProcessor(Contracts contracts) {
            this.contracts = contracts;
        }

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            this.context = context;
            this.store = context.getStateStore(STORE);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            byte[] value = record.value();
            GenericRecord command;
            try {
                if (value == null || value.length < 5 || value[0] != 0) {
                    throw new IllegalArgumentException("not in the Confluent wire format");
                }
                int id = ByteBuffer.wrap(value, 1, 4).getInt();
                GenericDatumReader<GenericRecord> reader = readers.computeIfAbsent(id,
                        i -> new GenericDatumReader<>(contracts.writer(i)));
                decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
                command = reader.read(null, decoder);
            } catch (IOException | RuntimeException e) {
                skip("undecodable: " + e.getMessage());
                return;
            }
            String type = command.getSchema().getName();
            String commandId = str(command, "command_id");
            String sku = str(command, "sku");
            String key = record.key() == null ? null : new String(record.key(), StandardCharsets.UTF_8);
            if (commandId == null || commandId.isEmpty() || sku == null || sku.isEmpty() || !sku.equals(key)) {
                skip("not a command of this aggregate keyed by its SKU");
                return;
            }
            Long expected = command.getSchema().getField("expected_version") == null
                    ? null : (Long) command.get("expected_version");
            String correlation = str(command, "correlation_id");
            if (correlation == null) {
                correlation = commandId;
            }
            long now = System.currentTimeMillis();

            byte[] stored = store.get(sku);
            State state = stored == null ? new State() : readState(stored);

            Seen seen = null;
            for (var it = state.recent.descendingIterator(); it.hasNext(); ) {
                Seen s = it.next();
                if (s.commandId().equals(commandId)) {
                    seen = s;
                    break;
                }
            }
            Long newVersion;
            String code = null;
            String reason = null;
            if (seen != null) {
                newVersion = seen.newVersion();
                code = seen.code();
                reason = seen.reason();
            } else {
                List<Event> events;
                try {
                    if (expected != null && expected != state.version) {
                        throw new Rejected("conflict", "expected version " + expected
                                + ", but the aggregate is at version " + state.version);
                    }
                    events = handle(state, type, command, sku);
                } catch (Rejected r) {
                    events = null;
                    code = r.code;
                    reason = cut(r.getMessage());
                }
                boolean existed = stored != null;
                if (events != null) {
                    long first = state.version + 1;
                    for (int i = 0; i < events.size(); i++) {
                        Event e = events.get(i);
                        apply(state, e);
                        byte[] bytes = encode(event(e, sku, first + i, commandId, correlation, now));
                        context.forward(new Record<>(record.key(), bytes, record.timestamp()), "events");
                    }
                    state.version += events.size();
                    newVersion = state.version;
                } else {
                    newVersion = null;
                }
                long at = Math.min(record.timestamp(), now);
                if (!state.recent.isEmpty()) {
                    at = Math.max(state.recent.peekLast().atMs(), at);
                }
                remember(state, Seen.of(commandId, at, newVersion, code, reason), at);
                // A rejection for a SKU that does not exist leaves no state behind.
                if (existed || events != null) {
                    store.put(sku, encode(stateRecord(state, sku, now)));
                }
            }
            GenericRecord result = new GenericData.Record(contracts.schema("causeway.CommandResult"));
            result.put("command_id", commandId);
            result.put("correlation_id", correlation);
            result.put("aggregate_type", "inventory");
            result.put("aggregate_id", sku);
            Schema outcome = result.getSchema().getField("outcome").schema();
            result.put("outcome", new GenericData.EnumSymbol(outcome, newVersion != null ? "ACCEPTED" : "REJECTED"));
            result.put("new_version", newVersion);
            result.put("rejection_code", code);
            result.put("reason", reason);
            result.put("processed_at", now);
            byte[] resultKey = commandId.getBytes(StandardCharsets.UTF_8);
            context.forward(new Record<>(resultKey, encode(result), record.timestamp()), "results");
        }

        void skip(String why) {
            if (skipped++ < 10) {
                System.err.println("skipping a record: " + why);
            }
        }

        static String str(GenericRecord r, String field) {
            if (r.getSchema().getField(field) == null) {
                return null;
            }
            Object v = r.get(field);
            return v == null ? null : v.toString();
        }

        static String cut(String reason) {
            byte[] bytes = reason.getBytes(StandardCharsets.UTF_8);
            if (bytes.length <= MAX_REASON_BYTES) {
                return reason;
            }
            int end = MAX_REASON_BYTES;
            while (end > 0 && (bytes[end] & 0xC0) == 0x80) {
                end--;
            }
            return new String(bytes, 0, end, StandardCharsets.UTF_8);
        }

        /** The domain's decision, as domains/orders/src/inventory.rs takes it. */
        static List<Event> handle(State s, String type, GenericRecord c, String sku) throws Rejected {
            long reserved = 0;
            for (int q : s.reservations.values()) {
                reserved += q;
            }
            switch (type) {
                case "AddStock": {
                    int quantity = (Integer) c.get("quantity");
                    if (quantity < 1) {
                        throw new Rejected("invalid_quantity", "add at least 1 unit");
                    }
                    if ((long) s.available + reserved + quantity > MAX_UNITS) {
                        throw new Rejected("invalid_quantity", "a SKU holds at most " + MAX_UNITS + " units");
                    }
                    return List.of(new Event("StockAdded", quantity, s.available + quantity, null));
                }
                case "ReserveStock": {
                    int quantity = (Integer) c.get("quantity");
                    String order = str(c, "order_id");
                    if (quantity < 1) {
                        throw new Rejected("invalid_quantity", "reserve at least 1 unit");
                    }
                    if (s.reservations.containsKey(order)) {
                        throw new Rejected("duplicate_reservation",
                                "order " + order + " already holds a reservation of " + sku);
                    }
                    if (quantity > s.available) {
                        throw new Rejected("insufficient_stock",
                                quantity + " units of " + sku + " requested, " + s.available + " available");
                    }
                    return List.of(new Event("StockReserved", quantity, s.available - quantity, order));
                }
                case "ReleaseReservation":
                case "CommitReservation": {
                    String order = str(c, "order_id");
                    Integer quantity = s.reservations.get(order);
                    if (quantity == null) {
                        throw new Rejected("no_reservation", "order " + order + " holds no reservation of " + sku);
                    }
                    return type.equals("ReleaseReservation")
                            ? List.of(new Event("ReservationReleased", quantity, s.available + quantity, order))
                            : List.of(new Event("ReservationCommitted", quantity, null, order));
                }
                default:
                    throw new Rejected("unknown_command", type + " is not an inventory command");
            }
        }

        static void apply(State s, Event e) {
            switch (e.name()) {
                case "StockAdded" -> s.available = e.available();
                case "StockReserved" -> {
                    s.available = e.available();
                    s.reservations.put(e.orderId(), e.quantity());
                }
                case "ReservationReleased" -> {
                    s.available = e.available();
                    s.reservations.remove(e.orderId());
                }
                case "ReservationCommitted" -> s.reservations.remove(e.orderId());
                default -> throw new IllegalStateException(e.name());
            }
        }

        /** The window after `seen` joins it: the oldest leave while it is too long, too old or too big. */
        static void remember(State s, Seen seen, long at) {
            long oldestKept = at - MAX_AGE_MS;
            int len = s.recent.size() + 1;
            int bytes = seen.weight();
            for (Seen old : s.recent) {
                bytes += old.weight();
            }
            while (!s.recent.isEmpty()) {
                Seen old = s.recent.peekFirst();
                if (len > MAX_COMMANDS || old.atMs() < oldestKept || bytes > MAX_BYTES) {
                    s.recent.pollFirst();
                    len--;
                    bytes -= old.weight();
                } else {
                    break;
                }
            }
            s.recent.addLast(seen);
        }

        GenericRecord event(Event e, String sku, long version, String commandId, String correlation, long now) {
            String ns = "causeway.orders.inventory.";
            Schema schema = contracts.schema(ns + e.name());
            GenericRecord metadata = new GenericData.Record(schema.getField("metadata").schema());
            metadata.put("event_id", UUID.randomUUID().toString());
            metadata.put("aggregate_id", sku);
            metadata.put("aggregate_version", version);
            metadata.put("causation_id", commandId);
            metadata.put("correlation_id", correlation);
            metadata.put("occurred_at", now);
            metadata.put("schema_version", 1);
            GenericRecord r = new GenericData.Record(schema);
            r.put("metadata", metadata);
            r.put("sku", sku);
            r.put("quantity", e.quantity());
            if (schema.getField("order_id") != null) {
                r.put("order_id", e.orderId());
            }
            if (schema.getField("available") != null) {
                r.put("available", e.available());
            }
            return r;
        }

        GenericRecord stateRecord(State s, String sku, long now) {
            Schema schema = contracts.schema("causeway.orders.inventory.InventoryState");
            GenericRecord inner = new GenericData.Record(schema.getField("state").schema());
            inner.put("available", s.available);
            inner.put("reservations", s.reservations);
            Schema seenSchema = schema.getField("recent_commands").schema().getElementType();
            List<GenericRecord> recent = new ArrayList<>(s.recent.size());
            for (Seen seen : s.recent) {
                GenericRecord r = new GenericData.Record(seenSchema);
                r.put("command_id", seen.commandId());
                r.put("processed_at", seen.atMs());
                r.put("new_version", seen.newVersion());
                r.put("rejection_code", seen.code());
                r.put("reason", seen.reason());
                recent.add(r);
            }
            GenericRecord r = new GenericData.Record(schema);
            r.put("aggregate_id", sku);
            r.put("version", s.version);
            r.put("state", inner);
            r.put("recent_commands", recent);
            r.put("updated_at", now);
            return r;
        }

        State readState(byte[] bytes) {
            int id = ByteBuffer.wrap(bytes, 1, 4).getInt();
            GenericRecord r;
            try {
                GenericDatumReader<GenericRecord> reader = readers.computeIfAbsent(id,
                        i -> new GenericDatumReader<>(contracts.writer(i)));
                decoder = DecoderFactory.get().binaryDecoder(bytes, 5, bytes.length - 5, decoder);
                r = reader.read(null, decoder);
            } catch (IOException e) {
                throw new IllegalStateException("a stored state cannot be read: " + e.getMessage(), e);
            }
            State s = new State();
            s.version = (Long) r.get("version");
            GenericRecord inner = (GenericRecord) r.get("state");
            s.available = (Integer) inner.get("available");
            @SuppressWarnings("unchecked")
            Map<Object, Object> reservations = (Map<Object, Object>) inner.get("reservations");
            for (Map.Entry<Object, Object> e : reservations.entrySet()) {
                s.reservations.put(e.getKey().toString(), (Integer) e.getValue());
            }
            @SuppressWarnings("unchecked")
            List<GenericRecord> recent = (List<GenericRecord>) r.get("recent_commands");
            for (GenericRecord seen : recent) {
                s.recent.addLast(Seen.of(seen.get("command_id").toString(), (Long) seen.get("processed_at"),
                        (Long) seen.get("new_version"), str(seen, "rejection_code"), str(seen, "reason")));
            }
            return s;
        }

        /** `record` in the Confluent wire format, under its contract's registry id. */
        byte[] encode(GenericRecord record) {
            String name = record.getSchema().getFullName();
            out.reset();
            int id = contracts.ids.get(name);
            out.write(0);
            out.write(id >>> 24);
            out.write(id >>> 16);
            out.write(id >>> 8);
            out.write(id);
            try {
                encoder = EncoderFactory.get().binaryEncoder(out, encoder);
                writers.computeIfAbsent(name, n -> new GenericDatumWriter<>(record.getSchema())).write(record, encoder);
                encoder.flush();
            } catch (IOException e) {
                throw new IllegalStateException("cannot encode " + name + ": " + e.getMessage(), e);
            }
            return out.toByteArray();
        }
    }
}
