import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The Java twin of leakscope-agent, for containers whose /tmp is mounted
 * noexec: no copied-in binary can run there, but the container's own `java`
 * can run this jar. Same commands, same output:
 *
 *   jvms | dump PID PATH | cat PATH | rm PATH... | version
 *
 * Needs Java 16+ (Unix domain sockets in java.base).
 */
public final class LeakscopeAttach {
    public static void main(String[] args) {
        try {
            String command = args.length > 0 ? args[0] : "";
            switch (command) {
                case "jvms": listJvms(); break;
                case "dump":
                    if (args.length != 3) usage();
                    dump(Integer.parseInt(args[1]), args[2]);
                    break;
                case "cat":
                    if (args.length != 2) usage();
                    cat(args[1]);
                    break;
                case "rm":
                    for (int i = 1; i < args.length; i++) Files.deleteIfExists(Path.of(args[i]));
                    break;
                case "version": System.out.println("leakscope-attach (java)"); break;
                default: usage();
            }
        } catch (Exception e) {
            System.err.println("leakscope-attach: " + e.getMessage());
            System.exit(1);
        }
    }

    static void usage() {
        System.err.println("usage: LeakscopeAttach jvms | dump PID PATH | cat PATH | rm PATH... | version");
        System.exit(2);
    }

    static void listJvms() throws IOException {
        long own = ProcessHandle.current().pid();
        StringBuilder out = new StringBuilder();
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(Path.of("/proc"))) {
            for (Path dir : dirs) {
                String name = dir.getFileName().toString();
                if (!name.chars().allMatch(Character::isDigit) || Long.parseLong(name) == own) continue;
                try {
                    String line = describe(dir, name);
                    if (line != null) out.append(line).append('\n');
                } catch (IOException | RuntimeException vanished) {
                    // the process exited while we looked
                }
            }
        }
        System.out.print(out);
    }

    static String describe(Path dir, String pid) throws IOException {
        List<String> argv = new ArrayList<>();
        for (String a : new String(Files.readAllBytes(dir.resolve("cmdline")), StandardCharsets.UTF_8).split("\0")) {
            if (!a.isEmpty()) argv.add(a);
        }
        if (argv.isEmpty()) return null;
        Path exe = null;
        try {
            exe = Files.readSymbolicLink(dir.resolve("exe"));
        } catch (IOException | SecurityException forbidden) {
            exe = resolve(argv.get(0));
        }
        String base = exe != null ? exe.getFileName().toString() : Path.of(argv.get(0)).getFileName().toString();
        String maps = "";
        try { maps = Files.readString(dir.resolve("maps")); } catch (IOException forbidden) { }
        if (!base.equals("java") && !maps.contains("/libjvm.so")) return null;
        String uid = "", gid = "";
        for (String l : Files.readAllLines(dir.resolve("status"))) {
            String[] f = l.trim().split("\\s+");
            if (l.startsWith("Uid:") && f.length > 2) uid = f[2];
            if (l.startsWith("Gid:") && f.length > 2) gid = f[2];
        }
        String version = "-", jcmd = "-";
        if (exe != null && exe.getParent() != null && exe.getParent().getParent() != null) {
            Path home = exe.getParent().getParent();
            try {
                for (String l : Files.readAllLines(home.resolve("release"))) {
                    if (l.startsWith("JAVA_VERSION=")) version = l.substring(13).replace("\"", "");
                }
            } catch (IOException missing) { }
            if (Files.isRegularFile(home.resolve("bin/jcmd"))) jcmd = home.resolve("bin/jcmd").toString();
        }
        boolean disabled = argv.contains("-XX:+DisableAttachMechanism");
        try {
            for (String v : new String(Files.readAllBytes(dir.resolve("environ")), StandardCharsets.UTF_8).split("\0")) {
                if ((v.startsWith("JAVA_TOOL_OPTIONS=") || v.startsWith("JDK_JAVA_OPTIONS=")) && v.contains("-XX:+DisableAttachMechanism")) disabled = true;
            }
        } catch (IOException forbidden) { }
        String command = String.join(" ", argv).replace('\t', ' ').replace('\n', ' ');
        return String.join("\t", pid, uid, gid, version, jcmd, disabled ? "disabled" : "enabled", command);
    }

    static Path resolve(String command) {
        try {
            Path found = null;
            if (command.contains("/")) found = Path.of(command);
            else {
                String path = System.getenv().getOrDefault("PATH", "/usr/local/bin:/usr/bin:/bin");
                for (String d : path.split(":")) {
                    Path p = Path.of(d, command);
                    if (Files.isRegularFile(p)) { found = p; break; }
                }
            }
            return found == null ? null : found.toRealPath();
        } catch (IOException e) {
            return null;
        }
    }

    /** HotSpot attach: trigger file + SIGQUIT when there is no socket yet, then `dumpheap`. */
    static void dump(int pid, String path) throws Exception {
        if (!path.startsWith("/")) throw new IOException("the dump path must be absolute");
        Path socket = Path.of("/tmp/.java_pid" + pid);
        if (!Files.exists(socket)) startAttachListener(pid, socket);
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            channel.connect(UnixDomainSocketAddress.of(socket));
            StringBuilder request = new StringBuilder();
            for (String part : new String[] {"1", "dumpheap", path, "-live", ""}) request.append(part).append('\0');
            channel.write(ByteBuffer.wrap(request.toString().getBytes(StandardCharsets.UTF_8)));
            StringBuilder answer = new StringBuilder();
            ByteBuffer buffer = ByteBuffer.allocate(8192);
            while (channel.read(buffer) > 0) {
                buffer.flip();
                answer.append(StandardCharsets.UTF_8.decode(buffer));
                buffer.clear();
            }
            String text = answer.toString();
            int newline = text.indexOf('\n');
            String code = newline < 0 ? text.trim() : text.substring(0, newline).trim();
            String output = newline < 0 ? "" : text.substring(newline + 1);
            System.out.print(output);
            if (!code.equals("0")) throw new IOException("the JVM refused the dump (code " + code + "): " + output.trim());
            if (!output.contains("Heap dump file created")) throw new IOException("the JVM did not write the dump: " + output.trim());
        }
    }

    static void startAttachListener(int pid, Path socket) throws Exception {
        Path trigger = null;
        for (Path candidate : new Path[] {Path.of("/proc/" + pid + "/cwd/.attach_pid" + pid), Path.of("/tmp/.attach_pid" + pid)}) {
            try {
                Files.deleteIfExists(candidate);
                Files.createFile(candidate);
                trigger = candidate;
                break;
            } catch (IOException | SecurityException notHere) { }
        }
        if (trigger == null) throw new IOException("cannot create .attach_pid" + pid + " in the JVM's working directory or /tmp");
        try {
            // java.base cannot send signals: the image's kill, else the shell's builtin (argv, no input in the script).
            if (!run("kill", "-QUIT", Integer.toString(pid)) && !run("sh", "-c", "kill -QUIT \"$0\"", Integer.toString(pid))) {
                throw new IOException("cannot send SIGQUIT to " + pid + ": the image has neither kill nor sh");
            }
            long deadline = System.currentTimeMillis() + 10_000;
            while (!Files.exists(socket)) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IOException("JVM " + pid + " did not open its attach socket within 10 s: attach is disabled (-XX:+DisableAttachMechanism) or the JVM is not responding");
                }
                Thread.sleep(50);
            }
        } finally {
            Files.deleteIfExists(trigger);
        }
    }

    static boolean run(String... argv) {
        try {
            return new ProcessBuilder(argv).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start().waitFor() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    static void cat(String path) throws IOException {
        try (InputStream in = Files.newInputStream(Path.of(path)); OutputStream out = System.out) {
            in.transferTo(out);
        }
    }
}
