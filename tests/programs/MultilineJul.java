// Multi-line events for tests/tests/agent_multiline.rs: java.util.logging's FileHandler writes
// each event (date line, level line, stack trace) to args[0]; printStackTrace() prints each
// trace to stderr (Java flushes System.err at every line: one write per line). The traces are
// also written, unbuffered by logtap's tap, to args[2] (not tapped) so the test can compare
// byte for byte.
import java.io.FileWriter;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.logging.FileHandler;
import java.util.logging.Level;
import java.util.logging.Logger;
import java.util.logging.SimpleFormatter;

public class MultilineJul {
    static void deep(int n, int i) {
        if (n == 0) {
            throw new IllegalStateException("boom " + i, new java.io.IOException("disk " + i));
        }
        deep(n - 1, i);
    }

    public static void main(String[] args) throws Exception {
        Logger log = Logger.getLogger("app");
        log.setUseParentHandlers(false);
        FileHandler fh = new FileHandler(args[0]);
        fh.setFormatter(new SimpleFormatter());
        log.addHandler(fh);
        int n = Integer.parseInt(args[1]);
        try (FileWriter expected = new FileWriter(args[2])) {
            for (int i = 0; i < n; i++) {
                try {
                    deep(3, i);
                } catch (Exception e) {
                    log.log(Level.SEVERE, "request " + i + " failed", e);
                    e.printStackTrace();
                    StringWriter sw = new StringWriter();
                    e.printStackTrace(new PrintWriter(sw));
                    expected.write(sw.toString());
                    expected.write("\u0000");
                }
            }
        }
        fh.close();
    }
}
