//! An object graph kept whole in memory, for formats whose graphs are small
//! (a memory map has thousands of mappings, a heap profile thousands of call
//! paths): each front end lists its nodes and edges, and the dominator tree,
//! retained sizes, histogram and diff work on it as on any dump.

use crate::graph::{DumpFacts, ObjectGraph, Role};
use crate::IdMap;

pub struct Node {
    pub id: u64,
    /// From [`Builder::class`].
    pub class: u32,
    pub shallow: u64,
    /// What one histogram row counts for this node (1 for an object; a heap
    /// profile's call path counts the objects allocated there).
    pub count: u64,
    /// How a page names this node (`[heap] 55d0…-…`); `None`: its class name.
    pub label: Option<String>,
    pub role: Role,
}

const NO_NAME: u32 = u32::MAX;

#[derive(Default)]
pub struct Builder {
    nodes: Vec<Node>,
    /// Edge names, interned (a profile's millions of call edges name a few thousand lines).
    edge_name_index: std::collections::HashMap<String, u32>,
    edge_name_texts: Vec<String>,
    class_index: std::collections::HashMap<String, u32>,
    class_names: Vec<String>,
    edges: Vec<(u32, u32, u32)>,
    roots: Vec<(u32, u8)>,
    sites: Vec<leakscope_model::analysis::AllocationSite>,
    functions: Vec<leakscope_model::analysis::ProfileFunction>,
}

impl Builder {
    /// The number of a class name (interned: call paths share few names).
    pub fn class(&mut self, name: &str) -> u32 {
        if let Some(&c) = self.class_index.get(name) {
            return c;
        }
        self.class_names.push(name.to_string());
        let c = (self.class_names.len() - 1) as u32;
        self.class_index.insert(name.to_string(), c);
        c
    }

    /// Where the memory was allocated, when the format says.
    pub fn sites(&mut self, sites: Vec<leakscope_model::analysis::AllocationSite>) {
        self.sites = sites;
    }

    /// A profile's numbers per function, when the format has them.
    pub fn profile_functions(&mut self, functions: Vec<leakscope_model::analysis::ProfileFunction>) {
        self.functions = functions;
    }

    pub fn node(&mut self, node: Node) -> u32 {
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    /// The number of an edge name, for [`Builder::edge`].
    pub fn edge_name(&mut self, name: &str) -> u32 {
        if let Some(&n) = self.edge_name_index.get(name) {
            return n;
        }
        self.edge_name_texts.push(name.to_string());
        let n = (self.edge_name_texts.len() - 1) as u32;
        self.edge_name_index.insert(name.to_string(), n);
        n
    }

    /// An edge; `name` from [`Builder::edge_name`], or `None`.
    pub fn edge(&mut self, from: u32, to: u32, name: Option<u32>) {
        self.edges.push((from, to, name.unwrap_or(NO_NAME)));
    }

    pub fn root(&mut self, node: u32, kind: u8) {
        self.roots.push((node, kind));
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node_mut(&mut self, node: u32) -> &mut Node {
        &mut self.nodes[node as usize]
    }

    pub fn finish(self, facts: DumpFacts, root_kinds: &'static [&'static str]) -> SmallGraph {
        let class_of = self.nodes.iter().map(|n| n.class).collect();
        let class_names = self.class_names;
        let mut edges = self.edges;
        edges.sort_unstable_by_key(|e| e.0);
        let mut edge_start = vec![0u32; self.nodes.len() + 1];
        for e in &edges {
            edge_start[e.0 as usize + 1] += 1;
        }
        for i in 0..self.nodes.len() {
            edge_start[i + 1] += edge_start[i];
        }
        let targets = edges.iter().map(|e| e.1).collect();
        let edge_names = edges.into_iter().map(|e| e.2).collect();
        let mut roots = self.roots;
        roots.sort_by_key(|r| r.0);
        roots.dedup_by_key(|r| r.0);
        let index = self.nodes.iter().enumerate().map(|(i, n)| (n.id, i as u32)).collect();
        SmallGraph {
            facts: DumpFacts { classes: class_names.len() as u64, ..facts },
            class_of,
            class_names,
            nodes: self.nodes,
            edge_start,
            targets,
            edge_names,
            edge_name_texts: self.edge_name_texts,
            roots,
            root_kinds,
            index,
            sites: self.sites,
            functions: self.functions,
            suspects: true,
        }
    }
}

pub struct SmallGraph {
    nodes: Vec<Node>,
    class_of: Vec<u32>,
    class_names: Vec<String>,
    edge_start: Vec<u32>,
    targets: Vec<u32>,
    edge_names: Vec<u32>,
    edge_name_texts: Vec<String>,
    roots: Vec<(u32, u8)>,
    root_kinds: &'static [&'static str],
    index: IdMap<u32>,
    facts: DumpFacts,
    sites: Vec<leakscope_model::analysis::AllocationSite>,
    functions: Vec<leakscope_model::analysis::ProfileFunction>,
    suspects: bool,
}

impl SmallGraph {
    /// No leak-suspect sentences for this graph (see [`ObjectGraph::has_suspects`]).
    pub fn without_suspects(mut self) -> Self {
        self.suspects = false;
        self
    }

    pub fn node(&self, node: u32) -> &Node {
        &self.nodes[node as usize]
    }
}

impl ObjectGraph for SmallGraph {
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn successors(&self, node: u32) -> &[u32] {
        let (a, b) = (self.edge_start[node as usize], self.edge_start[node as usize + 1]);
        &self.targets[a as usize..b as usize]
    }
    fn shallow(&self, node: u32) -> u64 {
        self.nodes[node as usize].shallow
    }
    fn class_of(&self) -> &[u32] {
        &self.class_of
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn roots(&self) -> &[(u32, u8)] {
        &self.roots
    }
    fn root_kind_name(&self, kind: u8) -> String {
        self.root_kinds.get(kind as usize).copied().unwrap_or("root").to_string()
    }
    fn id(&self, node: u32) -> u64 {
        self.nodes[node as usize].id
    }
    fn index_of(&self, id: u64) -> Option<u32> {
        self.index.get(&id).copied()
    }
    fn edge_name(&self, from: u32, to: u32) -> Option<String> {
        let (a, b) = (self.edge_start[from as usize] as usize, self.edge_start[from as usize + 1] as usize);
        (a..b).find(|&e| self.targets[e] == to).and_then(|e| self.edge_name_texts.get(self.edge_names[e] as usize).cloned())
    }
    fn display_class(&self, node: u32) -> String {
        let node = &self.nodes[node as usize];
        node.label.clone().unwrap_or_else(|| self.class_names[node.class as usize].clone())
    }
    fn role(&self, node: u32) -> Role {
        self.nodes[node as usize].role
    }
    fn facts(&self) -> DumpFacts {
        self.facts.clone()
    }
    fn short_name<'n>(&self, name: &'n str) -> &'n str {
        name
    }
    fn allocation_sites(&self) -> Vec<leakscope_model::analysis::AllocationSite> {
        self.sites.clone()
    }
    fn has_suspects(&self) -> bool {
        self.suspects
    }
    fn profile_functions(&self) -> Vec<leakscope_model::analysis::ProfileFunction> {
        self.functions.clone()
    }
    fn counts(&self) -> Option<Vec<u64>> {
        Some(self.nodes.iter().map(|n| n.count).collect())
    }
}
