import java.io.File;
import java.util.List;
import org.graalvm.visualvm.lib.jfluid.heap.Heap;
import org.graalvm.visualvm.lib.jfluid.heap.HeapFactory;
import org.graalvm.visualvm.lib.jfluid.heap.Instance;
import org.graalvm.visualvm.lib.jfluid.heap.JavaClass;

/**
 * The peer in the analysis benchmark: VisualVM's heap engine doing the same
 * work as `leakscope analyze` (histogram, retained sizes, biggest objects).
 * Prints elapsed milliseconds.
 */
public class VisualVmHeap {
    public static void main(String[] args) throws Exception {
        long start = System.nanoTime();
        Heap heap = HeapFactory.createHeap(new File(args[0]));
        long instances = 0;
        long bytes = 0;
        for (Object o : heap.getAllClasses()) {
            JavaClass c = (JavaClass) o;
            instances += c.getInstancesCount();
            bytes += c.getAllInstancesSize();
        }
        List<Instance> biggest = heap.getBiggestObjectsByRetainedSize(100);
        long elapsed = (System.nanoTime() - start) / 1_000_000;
        System.out.println("instances " + instances + " bytes " + bytes + " biggest " + biggest.get(0).getJavaClass().getName()
            + " retained " + biggest.get(0).getRetainedSize());
        System.out.println("elapsed_ms " + elapsed);
    }
}
