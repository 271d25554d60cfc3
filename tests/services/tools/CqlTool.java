// A small CQL client for the test scripts (tests/services/cql.sh, cassandra-up.sh, smoke.sh). It
// uses the shaded DataStax 3.x driver that cassandra-all already depends on, so it costs no extra
// download (cqlsh would need a Python venv with cassandra-driver).
//
//   CqlTool [-w SECONDS] HOST:PORT [STATEMENT...]
//
// Runs each STATEMENT in order (or, without any, the statements read from standard input,
// separated by ';' at the end of a line) and prints the rows of each result, columns separated
// by a tab. Credentials come from TAILWARDEN_CASSANDRA_USER / TAILWARDEN_CASSANDRA_PASSWORD when
// set. With -w, connecting (and authenticating) is retried for up to SECONDS: cassandra-up.sh uses
// that to wait until the default superuser exists.
//
// Exit codes: 0 ok, 1 failure (the message is on standard error), 2 usage.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.ResultSet;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.SocketOptions;

public class CqlTool {
    public static void main(String[] args) throws Exception {
        int i = 0;
        long waitSeconds = 0;
        if (args.length >= 2 && args[0].equals("-w")) {
            waitSeconds = Long.parseLong(args[1]);
            i = 2;
        }
        if (args.length <= i || !args[i].contains(":")) {
            System.err.println("usage: CqlTool [-w SECONDS] HOST:PORT [STATEMENT...]");
            System.exit(2);
        }
        String hostPort = args[i++];
        int colon = hostPort.lastIndexOf(':');
        InetSocketAddress contact = new InetSocketAddress(hostPort.substring(0, colon),
                Integer.parseInt(hostPort.substring(colon + 1)));

        List<String> statements = new ArrayList<>();
        for (; i < args.length; i++) {
            statements.add(args[i]);
        }
        if (statements.isEmpty()) {
            statements = readStatements();
        }

        long deadline = System.nanoTime() + waitSeconds * 1_000_000_000L;
        while (true) {
            try {
                run(contact, statements);
                return;
            } catch (com.datastax.driver.core.exceptions.NoHostAvailableException
                     | com.datastax.driver.core.exceptions.AuthenticationException e) {
                if (System.nanoTime() >= deadline) {
                    fail(e);
                }
                Thread.sleep(250);
            } catch (Exception e) {
                fail(e);
            }
        }
    }

    static void run(InetSocketAddress contact, List<String> statements) {
        Cluster.Builder b = Cluster.builder()
                .addContactPointsWithPorts(contact)
                .withoutMetrics()
                .withoutJMXReporting()
                .withSocketOptions(new SocketOptions().setConnectTimeoutMillis(5000).setReadTimeoutMillis(30000));
        String user = System.getenv("TAILWARDEN_CASSANDRA_USER");
        if (user != null && !user.isEmpty()) {
            String password = System.getenv("TAILWARDEN_CASSANDRA_PASSWORD");
            b.withCredentials(user, password == null ? "" : password);
        }
        try (Cluster cluster = b.build(); Session session = cluster.connect()) {
            for (String s : statements) {
                ResultSet rs = session.execute(s);
                int n = rs.getColumnDefinitions().size();
                for (Row row : rs) {
                    StringBuilder line = new StringBuilder();
                    for (int c = 0; c < n; c++) {
                        if (c > 0) line.append('\t');
                        line.append(row.getObject(c));
                    }
                    System.out.println(line);
                }
            }
        }
    }

    static List<String> readStatements() throws Exception {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            String t = line.strip();
            if (t.isEmpty() || t.startsWith("--")) continue;
            cur.append(line).append('\n');
            if (t.endsWith(";")) {
                out.add(cur.toString());
                cur.setLength(0);
            }
        }
        if (!cur.toString().isBlank()) out.add(cur.toString());
        return out;
    }

    static void fail(Throwable e) {
        System.err.println("CqlTool: " + e.getClass().getSimpleName() + ": " + e.getMessage());
        System.exit(1);
    }
}
