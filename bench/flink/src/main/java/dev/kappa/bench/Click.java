/* One parsed click: what the deserializer hands to the window, as kappa's parse_click keeps it
 * (the key and the event time; user_id is not needed by the job). A Flink POJO (public fields,
 * no-argument constructor) so that Flink serializes it without Kryo across the keyBy. */
package dev.kappa.bench;

public final class Click {
    public String itemId;
    public long timestamp;

    public Click() {}

    public Click(String itemId, long timestamp) {
        this.itemId = itemId;
        this.timestamp = timestamp;
    }
}
