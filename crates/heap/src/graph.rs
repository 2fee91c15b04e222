//! The runtime-neutral object graph every analysis works on: dense `u32`
//! nodes, outgoing references that retain (CSR, weak references left out), a
//! histogram class and a shallow size per node, root nodes with a kind, and
//! names for nodes and references. Nothing here knows HPROF or V8: each
//! format in `formats/` builds its own compact store and implements this trait,
//! so the dominator tree, retained sizes, suspects and paths are written once.

/// What a node is, as far as a sentence about a leak needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Where people start reading a path: a Java class (its static fields),
    /// a JavaScript global object.
    Holder,
    /// An array (or array-like store) of this many elements.
    Array(u64),
    Object,
}

/// Facts about the dump as a whole, for the analysis summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpFacts {
    /// `hprof` or `v8`.
    pub format: &'static str,
    /// `java` or `node`.
    pub runtime: &'static str,
    pub id_size: u32,
    pub timestamp_ms: i64,
    /// Classes (HPROF) or constructors (V8) the dump knows.
    pub classes: u64,
    pub object_header_bytes: u32,
    pub reference_bytes: u32,
    pub compressed_oops: bool,
}

pub trait ObjectGraph: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Nodes `node` keeps alive (strong references only), in the dump's order.
    fn successors(&self, node: u32) -> &[u32];
    fn shallow(&self, node: u32) -> u64;
    /// Histogram class per node (an index into `class_names`).
    fn class_of(&self) -> &[u32];
    fn class_names(&self) -> &[String];
    /// Root nodes with a format-defined kind, sorted by node, each once.
    fn roots(&self) -> &[(u32, u8)];
    fn root_kind_name(&self, kind: u8) -> String;
    /// The dump's own id of a node (an address for HPROF, V8's object id).
    fn id(&self, node: u32) -> u64;
    /// Every node's id, in node order (one pass where ids are not kept in memory).
    fn ids(&self) -> Vec<u64> {
        (0..self.len() as u32).map(|node| self.id(node)).collect()
    }
    fn index_of(&self, id: u64) -> Option<u32>;
    /// The field, property, element (`[3]`) or variable of `from` that refers to `to`.
    fn edge_name(&self, from: u32, to: u32) -> Option<String>;
    /// How a page names this one object (`class Foo` for a Java class object).
    fn display_class(&self, node: u32) -> String;
    fn role(&self, node: u32) -> Role;
    fn facts(&self) -> DumpFacts;

    /// The short form used inside a sentence (`java.util.ArrayList` → `ArrayList`).
    fn short_name<'n>(&self, name: &'n str) -> &'n str {
        crate::names::short_name(name)
    }

    fn class_name(&self, node: u32) -> &str {
        &self.class_names()[self.class_of()[node as usize] as usize]
    }

    /// Where the live memory was allocated, when the dump says (tracemalloc).
    fn allocation_sites(&self) -> Vec<leakscope_model::analysis::AllocationSite> {
        Vec::new()
    }

    /// A Go heap profile's numbers per function (in-use and allocated).
    fn profile_functions(&self) -> Vec<leakscope_model::analysis::ProfileFunction> {
        Vec::new()
    }

    /// What each node counts for in the histogram's instances column, when
    /// not 1 (a heap profile's call path stands for the objects allocated there).
    fn counts(&self) -> Option<Vec<u64>> {
        None
    }

    /// False where "one object holds many of one class" says nothing (a
    /// process holds its mappings): the format's diff findings speak instead.
    fn has_suspects(&self) -> bool {
        true
    }

    fn root_nodes(&self) -> Vec<u32> {
        self.roots().iter().map(|r| r.0).collect()
    }
}
