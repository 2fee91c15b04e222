import java.util.ArrayList;
import java.util.List;

/** A static list of session-like objects that only grows; then waits to be dumped. */
public class LeakMain {
    static final List<Session> SESSIONS = new ArrayList<>();
    static Node CHAIN;
    /** A fifth argument `noise`: random payloads. */
    static boolean NOISE;

    static final class Session {
        final long id;
        final byte[] payload;
        final String user;
        int hits;

        Session(long id, int payloadBytes) {
            this.id = id;
            this.payload = new byte[payloadBytes];
            if (NOISE) {
                // Payloads that do not compress, for tests of storage by size.
                java.util.concurrent.ThreadLocalRandom.current().nextBytes(this.payload);
            }
            this.user = "user-" + id;
        }
    }

    /** A list of known shape: N nodes each holding a byte[K]. */
    static final class Node {
        Node next;
        final byte[] data;

        Node(Node next, int k) {
            this.next = next;
            this.data = new byte[k];
        }
    }

    public static void main(String[] args) throws Exception {
        int sessions = Integer.parseInt(args[0]);
        int payload = Integer.parseInt(args[1]);
        int nodes = Integer.parseInt(args[2]);
        int nodeBytes = Integer.parseInt(args[3]);
        NOISE = args.length > 4 && args[4].equals("noise");
        for (int i = 0; i < sessions; i++) {
            SESSIONS.add(new Session(i, payload));
        }
        Node head = null;
        for (int i = 0; i < nodes; i++) {
            head = new Node(head, nodeBytes);
        }
        CHAIN = head;
        System.out.println("ready");
        System.out.flush();
        Thread.sleep(600_000);
    }
}
