// Writes the .hgrm files that tests/test_stress.py compares with
// statsyard.cli.stress.write_percentile_distribution, with HdrHistogram's own
// Java code (Debian's libhdrhistogram-java 2.1.11):
//   java -cp /usr/share/java/hdrhistogram.jar HgrmGolden.java
import java.io.FileOutputStream;
import java.io.PrintStream;
import org.HdrHistogram.Histogram;

public class HgrmGolden {
    public static void main(String[] args) throws Exception {
        Histogram linear = new Histogram(1, 60_000_000_000L, 3);
        for (long v = 1000; v < 101000; v += 1000) linear.recordValueWithCount(v, 3);
        write(linear, "linear.hgrm", 1000.0);

        Histogram spread = new Histogram(1, 3_600_000_000L, 2);
        for (long i = 1; i <= 5000; i++) {
            spread.recordValueWithCount((i * i * 7919) % 50_000_000 + 1, i % 7 + 1);
        }
        write(spread, "spread.hgrm", 1.0);

        write(new Histogram(1, 60_000_000_000L, 3), "empty.hgrm", 1000.0);
    }

    static void write(Histogram histogram, String name, double ratio) throws Exception {
        try (PrintStream out = new PrintStream(new FileOutputStream(name))) {
            histogram.outputPercentileDistribution(out, ratio);
        }
    }
}
