/* A bounded-out-of-orderness watermark generator that emits at every event that raises the
 * maximum timestamp, instead of every 200 ms of wall time as forBoundedOutOfOrderness does.
 * The watermark is the same function (max timestamp - bound - 1); only its timing differs.
 * With --watermarks per-event the window sees, before each record, the watermark of the records
 * read before it, as kappa-gen's lateness rule assumes; with the periodic default, records read
 * in the first 200 ms (before the first watermark) are judged against no watermark at all, so
 * clicks moved back a day at the start of the topic are counted. Emitted through the source's
 * per-split (per-partition) output, which Flink combines as the minimum over the partitions. */
package dev.kappa.bench;

import java.time.Duration;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;

public final class PerEventWatermarks implements WatermarkGenerator<Click> {
    private final long bound;
    private long max;

    public PerEventWatermarks(Duration bound) {
        this.bound = bound.toMillis();
        this.max = Long.MIN_VALUE + this.bound + 1;
    }

    @Override
    public void onEvent(Click click, long timestamp, WatermarkOutput output) {
        if (timestamp > max) {
            max = timestamp;
            output.emitWatermark(new Watermark(max - bound - 1));
        }
    }

    @Override
    public void onPeriodicEmit(WatermarkOutput output) {}
}
