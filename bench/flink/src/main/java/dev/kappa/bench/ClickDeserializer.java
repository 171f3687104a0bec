/* Parses the topic's JSON click events inside the Kafka source, as kappa's seed job does in its
 * decoder: {"user_id":..,"item_id":"item_42","timestamp":1700000000000}. A record is malformed
 * (skipped and counted, never fatal) when it is not one JSON object, or item_id is not a
 * non-empty string, or timestamp is not a non-negative integer: the same rule as
 * jobs/hourly_clicks.c. Malformed records emit nothing, so they never reach the timestamp
 * assigner and never advance a partition's watermark (kappa-gen's truth assumes that). */
package dev.kappa.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.metrics.Counter;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

public final class ClickDeserializer implements KafkaRecordDeserializationSchema<Click> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory();

    /* Malformed records of every source subtask of this JVM: the bench runs a local
     * MiniCluster, so main() reads it after the job; the metric below is the per-subtask view. */
    static final AtomicLong MALFORMED = new AtomicLong();

    private transient Counter malformed;

    @Override
    public void open(DeserializationSchema.InitializationContext context) {
        malformed = context.getMetricGroup().counter("malformedRecords");
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Click> out) {
        Click click = parse(record.value());
        if (click != null) {
            out.collect(click);
            return;
        }
        MALFORMED.incrementAndGet();
        if (malformed != null)
            malformed.inc();
    }

    /* The click in raw, or null when raw is malformed. */
    static Click parse(byte[] raw) {
        if (raw == null)
            return null;
        String item = null;
        long ts = -1;
        try (JsonParser p = JSON.createParser(raw)) {
            if (p.nextToken() != JsonToken.START_OBJECT)
                return null;
            for (JsonToken t = p.nextToken(); t != JsonToken.END_OBJECT; t = p.nextToken()) {
                String field = p.currentName();
                JsonToken v = p.nextToken();
                if ("item_id".equals(field))
                    item = v == JsonToken.VALUE_STRING ? p.getText() : null;
                else if ("timestamp".equals(field))
                    ts = v == JsonToken.VALUE_NUMBER_INT ? p.getLongValue() : -1;
                else
                    p.skipChildren();
            }
            if (p.nextToken() != null)
                return null; /* trailing bytes after the object */
        } catch (IOException | RuntimeException e) {
            return null; /* truncated or not JSON, or a number out of range */
        }
        if (item == null || item.isEmpty() || ts < 0)
            return null;
        return new Click(item, ts);
    }

    @Override
    public TypeInformation<Click> getProducedType() {
        return TypeInformation.of(Click.class);
    }
}
