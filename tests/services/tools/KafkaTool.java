// A small Kafka client for the test scripts (tests/services/kafka-topics.sh, smoke.sh), built
// against the kafka-clients jar that build.sh already resolved for the broker, so the tests need
// neither kafka-tools (93 jars) nor a shell distribution of Kafka.
//
//   KafkaTool BOOTSTRAP create NAME PARTITIONS [REPLICATION_FACTOR]
//       creates the topic and returns once every partition has a leader
//   KafkaTool BOOTSTRAP delete NAME...
//   KafkaTool BOOTSTRAP list                       topic names, one a line (internal ones too)
//   KafkaTool BOOTSTRAP describe NAME              "NAME PARTITIONS", then "PARTITION LEADER" lines
//   KafkaTool BOOTSTRAP produce TOPIC VALUE...     one record per VALUE (no key), acks=all
//   KafkaTool BOOTSTRAP consume TOPIC COUNT [TIMEOUT_S]
//       reads every partition from the beginning (no consumer group) and prints the first COUNT
//       values, one a line; fails if fewer arrive within TIMEOUT_S (default 30)
//
// Exit codes: 0 ok, 1 failure, 2 usage.
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class KafkaTool {
    static final Duration TIMEOUT = Duration.ofSeconds(30);

    public static void main(String[] args) {
        if (args.length < 2) {
            usage();
        }
        String bootstrap = args[0];
        String cmd = args[1];
        List<String> rest = Arrays.asList(args).subList(2, args.length);
        try {
            switch (cmd) {
                case "create":
                    if (rest.size() < 2 || rest.size() > 3) usage();
                    create(bootstrap, rest.get(0), Integer.parseInt(rest.get(1)),
                            rest.size() == 3 ? Short.parseShort(rest.get(2)) : (short) 1);
                    break;
                case "delete":
                    if (rest.isEmpty()) usage();
                    try (Admin admin = admin(bootstrap)) {
                        admin.deleteTopics(rest).all().get();
                    }
                    break;
                case "list":
                    if (!rest.isEmpty()) usage();
                    try (Admin admin = admin(bootstrap)) {
                        for (String name : new TreeSet<>(admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get())) {
                            System.out.println(name);
                        }
                    }
                    break;
                case "describe":
                    if (rest.size() != 1) usage();
                    try (Admin admin = admin(bootstrap)) {
                        TopicDescription d = admin.describeTopics(rest).topicNameValues().get(rest.get(0)).get();
                        System.out.println(d.name() + " " + d.partitions().size());
                        for (TopicPartitionInfo p : d.partitions()) {
                            System.out.println(p.partition() + " " + (p.leader() == null ? "none" : p.leader().id()));
                        }
                    }
                    break;
                case "produce":
                    if (rest.size() < 2) usage();
                    produce(bootstrap, rest.get(0), rest.subList(1, rest.size()));
                    break;
                case "consume":
                    if (rest.size() < 2 || rest.size() > 3) usage();
                    consume(bootstrap, rest.get(0), Integer.parseInt(rest.get(1)),
                            Duration.ofSeconds(rest.size() == 3 ? Long.parseLong(rest.get(2)) : 30));
                    break;
                default:
                    usage();
            }
        } catch (ExecutionException e) {
            fail(e.getCause() == null ? e : e.getCause());
        } catch (Exception e) {
            fail(e);
        }
    }

    static void usage() {
        System.err.println("usage: KafkaTool BOOTSTRAP create NAME PARTITIONS [RF] | delete NAME... | list"
                + " | describe NAME | produce TOPIC VALUE... | consume TOPIC COUNT [TIMEOUT_S]");
        System.exit(2);
    }

    static void fail(Throwable e) {
        System.err.println("KafkaTool: " + e.getClass().getSimpleName() + ": " + e.getMessage());
        System.exit(1);
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
        return Admin.create(p);
    }

    static void create(String bootstrap, String name, int partitions, short rf) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(name, Optional.of(partitions), Optional.of(rf)))).all().get();
            // The controller answers before the broker has loaded the new partitions; wait until
            // the metadata names a leader for each, so a test can produce right away.
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (true) {
                try {
                    TopicDescription d = admin.describeTopics(List.of(name)).topicNameValues().get(name).get();
                    if (d.partitions().size() == partitions
                            && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty())) {
                        return;
                    }
                } catch (ExecutionException e) {
                    if (System.nanoTime() > deadline) throw e;
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("topic " + name + " has no leader for every partition after " + TIMEOUT);
                }
                Thread.sleep(50);
            }
        }
    }

    static void produce(String bootstrap, String topic, List<String> values) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
        p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
        try (KafkaProducer<byte[], byte[]> producer =
                     new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            List<java.util.concurrent.Future<?>> acks = new ArrayList<>();
            for (String v : values) {
                acks.add(producer.send(new ProducerRecord<>(topic, v.getBytes(StandardCharsets.UTF_8))));
            }
            for (java.util.concurrent.Future<?> a : acks) {
                a.get();
            }
        }
    }

    static void consume(String bootstrap, String topic, int count, Duration timeout) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        long deadline = System.nanoTime() + timeout.toNanos();
        int seen = 0;
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, timeout)) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            if (parts.isEmpty()) {
                throw new IllegalStateException("topic " + topic + " does not exist");
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            while (seen < count) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new IllegalStateException("got " + seen + " of " + count + " records from " + topic
                            + " within " + timeout.toSeconds() + " s");
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofNanos(Math.min(left, 500_000_000L)))) {
                    if (seen < count) {
                        System.out.println(r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8));
                    }
                    seen++;
                }
            }
        }
    }
}
