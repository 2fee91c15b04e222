//! The result of analysing one heap dump, and the diff of two. Same JSON for
//! the CLI (`leakscope analyze --json`) and the API.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeapSummary {
    /// The dump's format: `hprof` or `v8` (a `.heapsnapshot`).
    pub format: String,
    /// The runtime that wrote it: `java` or `node` (older records: empty, meaning java).
    #[serde(default)]
    pub runtime: String,
    /// Identifier size in bytes (4 or 8).
    pub id_size: u32,
    /// Dump time, Unix milliseconds (from the HPROF header).
    pub timestamp_ms: i64,
    /// Objects in the dump: instances, arrays and class objects.
    pub objects: u64,
    /// Objects reachable from a GC root.
    pub reachable_objects: u64,
    pub classes: u64,
    /// Sum of shallow sizes of all objects.
    pub heap_bytes: u64,
    /// Sum of shallow sizes of reachable objects (what the root retains).
    pub reachable_bytes: u64,
    pub gc_roots: u64,
    /// Size model used: header bytes, reference bytes, alignment.
    pub object_header_bytes: u32,
    pub reference_bytes: u32,
    pub compressed_oops: bool,
    pub analysis_millis: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistogramEntry {
    /// Java source form: `long[]`, `java.lang.Object[]`, `com.example.Main$Session`.
    pub class: String,
    pub instances: u64,
    pub shallow_bytes: u64,
    /// Retained by all instances together (nested instances counted once).
    pub retained_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DominatorEntry {
    /// The object's id in the dump, hex (`0x...`).
    pub object_id: String,
    pub class: String,
    pub shallow_bytes: u64,
    pub retained_bytes: u64,
    /// Depth in the dominator tree (1 = dominated only by the virtual root).
    pub depth: u32,
}

/// One step on a path from a GC root: the object and the field leading onward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathStep {
    pub object_id: String,
    pub class: String,
    /// Field (or `[index]`) of this object that refers to the next step; `None` on the last step.
    pub field: Option<String>,
    /// For the first step: the GC root kind (`sticky class`, `thread object`, ...).
    pub root_kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suspect {
    /// One sentence a person can act on.
    pub description: String,
    /// The object that retains the memory.
    pub object_id: String,
    pub class: String,
    pub retained_bytes: u64,
    /// Share of the reachable heap, 0..1.
    pub retained_share: f64,
    /// Where the many similar objects accumulate (may equal the suspect).
    pub accumulation_object_id: String,
    pub accumulation_class: String,
    /// The most common class among the objects the accumulation point holds.
    pub accumulated_class: Option<String>,
    pub accumulated_instances: u64,
    /// Shortest path from a GC root to the accumulation point.
    pub path: Vec<PathStep>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Analysis {
    pub summary: HeapSummary,
    /// Sorted by retained bytes, then shallow bytes, largest first.
    pub histogram: Vec<HistogramEntry>,
    /// Objects with the largest retained sizes, largest first, nested ones included.
    pub dominators: Vec<DominatorEntry>,
    pub suspects: Vec<Suspect>,
    /// A browsable slice of the dominator tree (the biggest children of each
    /// node, down to small shares of the heap), for expanding in the page.
    #[serde(default)]
    pub tree: Vec<TreeNode>,
    /// Shortest reference paths from GC roots to every node of `tree`, as links
    /// (each object once, pointing at the one referring to it).
    #[serde(default)]
    pub gc_paths: Vec<PathLink>,
    /// Python snapshots of a process where `tracemalloc` was already tracing:
    /// the lines that allocated the most live memory, biggest first.
    #[serde(default)]
    pub allocation_sites: Vec<AllocationSite>,
    /// Go heap profiles: in-use and allocated space and objects per function,
    /// as `go tool pprof -top` gives them for each sample index; most in use first.
    #[serde(default)]
    pub profile_functions: Vec<ProfileFunction>,
}

/// One function of a Go heap profile. Flat: samples whose innermost frame it
/// is; cum: samples with it anywhere on the stack (once per sample).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileFunction {
    pub function: String,
    pub inuse_space_flat: u64,
    pub inuse_space_cum: u64,
    pub inuse_objects_flat: u64,
    pub alloc_space_flat: u64,
    pub alloc_space_cum: u64,
    pub alloc_objects_flat: u64,
}

/// A source line and the memory still allocated there (tracemalloc's view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllocationSite {
    pub file: String,
    pub line: u32,
    pub size_bytes: u64,
    pub blocks: u64,
}

/// One allocation site in two snapshots of a process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllocationSiteDelta {
    pub file: String,
    pub line: u32,
    pub size_bytes_before: u64,
    pub size_bytes_after: u64,
    pub size_bytes_delta: i64,
    pub blocks_delta: i64,
}

impl Analysis {
    /// Only what a page needs to show one level of the tree under `node`: its
    /// ancestors, its children and theirs (the treemap draws two levels), and
    /// its path from a GC root (pages stay small).
    pub fn trimmed_for(mut self, node: Option<&str>) -> Analysis {
        let path: std::collections::HashSet<String> = node.map(|n| self.path_to(n)).unwrap_or_default().into_iter().map(|s| s.object_id).collect();
        let mut keep: std::collections::HashSet<String> = self.tree_children(node).iter().map(|n| n.object_id.clone()).collect();
        let grandchildren: Vec<String> =
            self.tree.iter().filter(|t| t.parent.as_ref().is_some_and(|p| keep.contains(p))).map(|t| t.object_id.clone()).collect();
        keep.extend(grandchildren);
        if let Some(n) = node {
            keep.extend(self.tree_ancestors(n).iter().map(|a| a.object_id.clone()));
        }
        self.tree.retain(|t| keep.contains(&t.object_id));
        self.gc_paths.retain(|l| path.contains(&l.object_id));
        self
    }

    /// Whether the stored slice lists `node`'s children (the biggest 25 of them),
    /// so the tree and treemap can show them without going back to the dump.
    pub fn tree_lists_children_of(&self, node: Option<&str>) -> bool {
        let Some(n) = node else { return true };
        let listed = self.tree_children(Some(n)).len() as u64;
        self.tree.iter().find(|t| t.object_id == n).is_some_and(|t| listed >= t.children.min(25))
    }

    /// Children of a tree node (`None`: the top level, what GC roots keep directly), largest first.
    pub fn tree_children(&self, parent: Option<&str>) -> Vec<&TreeNode> {
        self.tree.iter().filter(|n| n.parent.as_deref() == parent).collect()
    }

    /// The dominator-tree ancestors of an object, outermost first (for a breadcrumb).
    pub fn tree_ancestors(&self, object_id: &str) -> Vec<&TreeNode> {
        let mut out = Vec::new();
        let mut at = self.tree.iter().find(|n| n.object_id == object_id);
        while let Some(node) = at {
            out.push(node);
            at = node.parent.as_deref().and_then(|p| self.tree.iter().find(|n| n.object_id == p));
            if out.len() > self.tree.len() {
                break; // a malformed record must not loop forever
            }
        }
        out.reverse();
        out
    }

    /// The path from a GC root to an object of the tree, root first; empty when unknown.
    pub fn path_to(&self, object_id: &str) -> Vec<PathStep> {
        let links: std::collections::HashMap<&str, &PathLink> = self.gc_paths.iter().map(|l| (l.object_id.as_str(), l)).collect();
        let mut chain: Vec<&PathLink> = Vec::new();
        let mut at = links.get(object_id).copied();
        while let Some(link) = at {
            chain.push(link);
            if chain.len() > links.len() {
                return Vec::new();
            }
            at = link.referrer.as_deref().and_then(|r| links.get(r).copied());
        }
        chain.reverse();
        let mut steps: Vec<PathStep> = chain
            .iter()
            .map(|l| PathStep { object_id: l.object_id.clone(), class: l.class.clone(), field: None, root_kind: l.root_kind.clone() })
            .collect();
        // The field that leads onward is stored on the next link.
        for i in 0..steps.len().saturating_sub(1) {
            steps[i].field = chain[i + 1].field.clone();
        }
        steps
    }
}

/// Any object of a dump, looked up on demand: the stored tree lists only the
/// biggest objects, this answers for every one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectDetail {
    pub object: TreeNode,
    /// Its dominators, outermost first (the nearest 200 at most).
    pub dominators: Vec<TreeNode>,
    /// What it dominates directly, largest first (the biggest 25).
    pub children: Vec<TreeNode>,
    /// The shortest reference path from a GC root to it (empty when unreachable).
    pub gc_path: Vec<PathLink>,
}

impl Analysis {
    /// The analysis with one looked-up object woven into its tree and paths,
    /// so that the tree can be opened at that object like at any stored one.
    pub fn with_object(mut self, detail: &ObjectDetail) -> Analysis {
        let known: std::collections::HashSet<String> = self.tree.iter().map(|t| t.object_id.clone()).collect();
        let nodes = detail.dominators.iter().chain(std::iter::once(&detail.object)).chain(&detail.children);
        self.tree.extend(nodes.filter(|t| !known.contains(&t.object_id)).cloned());
        let linked: std::collections::HashSet<String> = self.gc_paths.iter().map(|l| l.object_id.clone()).collect();
        self.gc_paths.extend(detail.gc_path.iter().filter(|l| !linked.contains(&l.object_id)).cloned());
        self
    }
}

/// One node of the browsable dominator tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeNode {
    pub object_id: String,
    pub class: String,
    pub shallow_bytes: u64,
    pub retained_bytes: u64,
    /// The immediate dominator's object id; `None` for the top level.
    pub parent: Option<String>,
    /// How many objects it dominates directly (more than the tree may list).
    pub children: u64,
}

/// One object on a reference path from a GC root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathLink {
    pub object_id: String,
    pub class: String,
    /// The object that refers to this one on the shortest path; `None` for a GC root.
    pub referrer: Option<String>,
    /// The referrer's field (or `[index]`) that points here.
    pub field: Option<String>,
    /// For GC roots: the root kind.
    pub root_kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassDelta {
    pub class: String,
    pub instances_before: u64,
    pub instances_after: u64,
    pub instances_delta: i64,
    pub shallow_bytes_before: u64,
    pub shallow_bytes_after: u64,
    pub shallow_bytes_delta: i64,
    pub retained_bytes_before: u64,
    pub retained_bytes_after: u64,
    pub retained_bytes_delta: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuspectDelta {
    pub description: String,
    pub accumulation_class: String,
    pub retained_bytes_before: u64,
    pub retained_bytes_after: u64,
    pub retained_bytes_delta: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeapDiff {
    pub before: HeapSummary,
    pub after: HeapSummary,
    pub heap_bytes_delta: i64,
    /// Per class, sorted by shallow-byte growth, largest first.
    pub classes: Vec<ClassDelta>,
    /// Suspects of the later dump with how much they grew.
    pub suspects: Vec<SuspectDelta>,
    /// Two V8 snapshots of one process (V8 keeps object ids within a
    /// process): per constructor, the objects added and freed between them,
    /// matched by object id, as Chrome DevTools' Comparison view. `None` for
    /// other pairs (the per-class aggregate above is then the comparison).
    #[serde(default)]
    pub objects: Option<Vec<ObjectChange>>,
    /// Allocation sites of both dumps (Python's tracemalloc, a Go heap profile's allocating lines), most growth first.
    #[serde(default)]
    pub allocation_sites: Vec<AllocationSiteDelta>,
    /// What grew, in plain words, where the format says more than its
    /// histogram (memory maps: `[heap] grew 300 MiB`, `thread count grew …`).
    #[serde(default)]
    pub findings: Vec<String>,
}

/// One constructor's objects added and freed between two snapshots of one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectChange {
    pub class: String,
    /// In the later snapshot only.
    pub new_objects: u64,
    pub new_bytes: u64,
    /// In the earlier snapshot only.
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    pub objects_delta: i64,
    pub bytes_delta: i64,
}
