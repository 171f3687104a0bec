/* Turns a fired window's count into the document kappa's seed job writes (write_count in
 * jobs/hourly_clicks.c): {"item_id":..,"click_count":..,"window_start":..,"window_end":..},
 * window_end exclusive, one JSON object per line. */
package dev.kappa.bench;

import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

public final class HourlyDocument extends ProcessWindowFunction<Long, String, String, TimeWindow> {
    private static final long serialVersionUID = 1L;

    @Override
    public void process(String item, Context ctx, Iterable<Long> counts, Collector<String> out) {
        long count = counts.iterator().next();
        StringBuilder doc = new StringBuilder(96);
        doc.append("{\"item_id\":");
        appendJsonString(doc, item);
        doc.append(",\"click_count\":").append(count);
        doc.append(",\"window_start\":").append(ctx.window().getStart());
        doc.append(",\"window_end\":").append(ctx.window().getEnd()).append('}');
        out.collect(doc.toString());
    }

    /* s as a JSON string literal (quotes, backslashes and control characters escaped). */
    static void appendJsonString(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\')
                out.append('\\').append(c);
            else if (c < 0x20)
                out.append(String.format("\\u%04x", (int) c));
            else
                out.append(c);
        }
        out.append('"');
    }
}
