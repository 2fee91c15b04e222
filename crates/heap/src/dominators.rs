//! Dominator tree by semi-NCA (Lengauer–Tarjan's semidominators with path
//! compression, then nearest common ancestors; near-linear in practice), written
//! by hand because it must run on tens of millions of nodes in flat u32
//! arrays; petgraph's `simple_fast` is quadratic in the worst case.
//!
//! The graph gets a virtual root (index `n`) whose successors are the GC roots.

use crate::column::Column;

pub const NONE: u32 = u32::MAX;

pub struct Dominators {
    /// Immediate dominator per node (`n` = the virtual root, `NONE` = unreachable).
    pub idom: Column<u32>,
    /// Reachable nodes in DFS preorder, starting with the virtual root.
    pub preorder: Column<u32>,
}

/// `successors(v)` lists v's successors for v < n; `roots` are the virtual root's.
pub fn compute<'g>(n: usize, roots: &[u32], successors: impl Fn(u32) -> &'g [u32]) -> Dominators {
    let root = n as u32;
    let succ = |v: u32| -> &[u32] { if v == root { roots } else { successors(v) } };

    // 1. Iterative DFS: preorder numbers and DFS-tree parents.
    let mut dfnum = Column::filled(n + 1, NONE);
    // Reserved whole (untouched pages cost nothing) rather than grown by copies.
    let mut vertex: Column<u32> = Column::with_capacity(n + 1);
    let mut parent: Column<u32> = Column::with_capacity(n + 1);
    let mut stack: Vec<(u32, u32)> = vec![(root, 0)];
    dfnum[root as usize] = 0;
    vertex.push(root);
    parent.push(NONE);
    while let Some(&mut (v, ref mut next)) = stack.last_mut() {
        let s = succ(v);
        if (*next as usize) < s.len() {
            let w = s[*next as usize];
            *next += 1;
            if dfnum[w as usize] == NONE {
                dfnum[w as usize] = vertex.len() as u32;
                parent.push(dfnum[v as usize]);
                vertex.push(w);
                stack.push((w, 0));
            }
        } else {
            stack.pop();
        }
    }
    // Its capacity can reach the node count on deep graphs: not kept through the rest.
    drop(stack);
    let count = vertex.len();

    // 2. Predecessors in preorder numbering (reachable nodes only). The fill
    // cursor is the start array itself, shifted back afterwards (no copy).
    let mut pred_start = Column::filled(count + 1, 0u32);
    for &v in vertex.iter() {
        for &w in succ(v) {
            let dw = dfnum[w as usize];
            if dw != NONE {
                pred_start[dw as usize + 1] += 1;
            }
        }
    }
    for i in 0..count {
        pred_start[i + 1] += pred_start[i];
    }
    let mut preds = Column::filled(pred_start[count] as usize, 0u32);
    for &v in vertex.iter() {
        let dv = dfnum[v as usize];
        for &w in succ(v) {
            let dw = dfnum[w as usize];
            if dw != NONE {
                preds[pred_start[dw as usize] as usize] = dv;
                pred_start[dw as usize] += 1;
            }
        }
    }
    for i in (1..=count).rev() {
        pred_start[i] = pred_start[i - 1];
    }
    pred_start[0] = 0;
    drop(dfnum);

    // 3. Semidominators by semi-NCA (Georgiadis): Lengauer–Tarjan's
    // evaluation with path compression, without its buckets. Vertices are
    // processed in reverse preorder, so while `w` is processed exactly the
    // vertices numbered above `w` are linked into the forest, each to its
    // DFS parent: no separate "linked" marker is needed.
    let mut semi: Column<u32> = (0..count as u32).collect();
    let mut label: Column<u32> = (0..count as u32).collect();
    let mut ancestor: Column<u32> = parent.iter().copied().collect();
    let mut path: Vec<u32> = Vec::new();
    for w in (1..count as u32).rev() {
        let mut best = semi[w as usize];
        for k in pred_start[w as usize]..pred_start[w as usize + 1] {
            let v = preds[k as usize];
            let u = if v <= w {
                v
            } else {
                // Compress the path from v up to the forest root (the first unlinked vertex).
                path.clear();
                let mut x = v;
                while ancestor[x as usize] > w {
                    path.push(x);
                    x = ancestor[x as usize];
                }
                // `x` hangs directly under the root; walk back down folding labels.
                for &y in path.iter().rev() {
                    let a = ancestor[y as usize];
                    if semi[label[a as usize] as usize] < semi[label[y as usize] as usize] {
                        label[y as usize] = label[a as usize];
                    }
                    ancestor[y as usize] = ancestor[a as usize];
                }
                label[v as usize]
            };
            best = best.min(semi[u as usize]);
        }
        semi[w as usize] = best;
    }
    drop((label, ancestor, preds, pred_start));

    // 4. Immediate dominators: the nearest common ancestor of the DFS parent
    // and the semidominator, climbing already-final dominators (in place).
    let mut idom = parent;
    for w in 1..count {
        let mut d = idom[w];
        while d > semi[w] {
            d = idom[d as usize];
        }
        idom[w] = d;
    }

    // 5. Back to node indices.
    let mut idom_nodes = Column::filled(n, NONE);
    for w in 1..count {
        idom_nodes[vertex[w] as usize] = vertex[idom[w] as usize];
    }
    Dominators { idom: idom_nodes, preorder: vertex }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize, roots: &[u32], edges: &[(u32, u32)]) -> Vec<u32> {
        let mut adj = vec![Vec::new(); n];
        for &(a, b) in edges {
            adj[a as usize].push(b);
        }
        compute(n, roots, |v| adj[v as usize].as_slice()).idom.to_vec()
    }

    #[test]
    fn textbook_graph() {
        // Root R = virtual root (5); 0 is the only GC root.
        // 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3, 3 -> 4
        let idom = run(5, &[0], &[(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]);
        assert_eq!(idom, vec![5, 0, 0, 0, 3]);
    }

    #[test]
    fn two_roots_share_an_object() {
        let idom = run(3, &[0, 1], &[(0, 2), (1, 2)]);
        assert_eq!(idom, vec![3, 3, 3]);
    }

    #[test]
    fn unreachable_nodes_have_no_dominator() {
        let idom = run(3, &[0], &[(0, 1)]);
        assert_eq!(idom[2], NONE);
    }

    #[test]
    fn cycles_and_a_deep_chain() {
        // A chain of 200 000 nodes must not overflow the stack.
        let n = 200_000u32;
        let mut edges: Vec<(u32, u32)> = (0..n - 1).map(|i| (i, i + 1)).collect();
        edges.push((n - 1, 0));
        let idom = run(n as usize, &[0], &edges);
        assert_eq!(idom[0], n);
        assert!((1..n).all(|i| idom[i as usize] == i - 1));
    }

    /// Cooper, Harvey and Kennedy's iterative algorithm: slow but simple, an
    /// independent check of the fast one on a graph big enough to build the
    /// predecessors in two parts.
    fn iterative(n: usize, roots: &[u32], edges: &[(u32, u32)]) -> Vec<u32> {
        let root = n as u32;
        let mut adj = vec![Vec::new(); n + 1];
        adj[n] = roots.to_vec();
        for &(a, b) in edges {
            adj[a as usize].push(b);
        }
        // Reverse postorder by an iterative DFS.
        let mut post = Vec::new();
        let mut seen = vec![false; n + 1];
        let mut stack = vec![(root, 0usize)];
        seen[n] = true;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = adj[v as usize].get(*next) {
                *next += 1;
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    stack.push((w, 0));
                }
            } else {
                post.push(v);
                stack.pop();
            }
        }
        let mut order = vec![usize::MAX; n + 1];
        for (i, &v) in post.iter().enumerate() {
            order[v as usize] = i;
        }
        let mut preds = vec![Vec::new(); n + 1];
        for (v, list) in adj.iter().enumerate() {
            for &w in list {
                preds[w as usize].push(v as u32);
            }
        }
        let mut idom = vec![NONE; n + 1];
        idom[n] = root;
        let mut changed = true;
        while changed {
            changed = false;
            for &v in post.iter().rev().skip(1) {
                let mut new = NONE;
                for &p in &preds[v as usize] {
                    if idom[p as usize] == NONE {
                        continue;
                    }
                    new = if new == NONE {
                        p
                    } else {
                        let (mut a, mut b) = (p, new);
                        while a != b {
                            while order[a as usize] < order[b as usize] {
                                a = idom[a as usize];
                            }
                            while order[b as usize] < order[a as usize] {
                                b = idom[b as usize];
                            }
                        }
                        a
                    };
                }
                if idom[v as usize] != new {
                    idom[v as usize] = new;
                    changed = true;
                }
            }
        }
        idom.truncate(n);
        idom
    }

    /// A spine keeps most nodes reachable; random edges, mostly local, make sharing and cycles.
    fn random_graph(n: u32, extra: usize) -> Vec<(u32, u32)> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |bound: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as u32
        };
        let mut edges: Vec<(u32, u32)> = (1..n).filter(|i| i % 7 != 0).map(|i| (next(i), i)).collect();
        for _ in 0..extra {
            let a = next(n);
            let b = if next(4) == 0 { next(n) } else { (a + next(50)).min(n - 1) };
            edges.push((a, b));
        }
        edges
    }

    #[test]
    fn a_big_random_graph_agrees_with_the_iterative_algorithm() {
        let n = 100_000u32;
        let edges = random_graph(n, 200_000);
        let roots = [0, 1, 2];
        assert_eq!(run(n as usize, &roots, &edges), iterative(n as usize, &roots, &edges));
    }

    #[test]
    fn columns_in_files_give_the_same_tree_as_columns_in_memory() {
        let _serial = crate::column::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let n = 1_500_000u32;
        let edges = random_graph(n, 2_000_000);
        let mut adj = vec![Vec::new(); n as usize];
        for &(a, b) in &edges {
            adj[a as usize].push(b);
        }
        let roots = [0, 1, 2];
        let in_files = compute(n as usize, &roots, |v| adj[v as usize].as_slice());
        assert!(in_files.idom.in_file() && in_files.preorder.in_file());
        crate::column::spill_into(None);
        let in_memory = compute(n as usize, &roots, |v| adj[v as usize].as_slice());
        crate::column::spill_into(Some(std::env::temp_dir()));
        assert!(!in_memory.idom.in_file());
        assert!(in_files.idom[..] == in_memory.idom[..] && in_files.preorder[..] == in_memory.preorder[..]);
    }
}
