//! AST graphs: a unit's named syntax tree with single-child chains collapsed, capped
//! breadth-first. Iterative throughout (explicit queue), so nesting depth cannot overflow the
//! stack.

use std::collections::VecDeque;

use tree_sitter::{Node, TreeCursor};

use crate::AstGraph;
use crate::language::Language;

/// Collects the named children of `node` into `out` (cleared first) with one cursor pass.
fn named_children<'t>(node: Node<'t>, cursor: &mut TreeCursor<'t>, out: &mut Vec<Node<'t>>) {
    out.clear();
    cursor.reset(node);
    if cursor.goto_first_child() {
        loop {
            let n = cursor.node();
            if n.is_named() {
                out.push(n);
            }
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
}

/// Builds the graph of the subtree at `root`; spans are relative to `base_byte`.
///
/// A node with exactly one named child is merged with that child, repeatedly: the merged node
/// keeps the **top** node's kind, span and position in the tree, and takes the children of the
/// bottom node of the chain. Hence no node of the result has exactly one child. Nodes are
/// numbered breadth-first (node 0 = `root`) and at most `max_nodes` are kept; `child_counts`
/// are counted in the collapsed tree before the cap.
pub fn build_graph(
    lang: &Language,
    root: Node<'_>,
    base_byte: usize,
    max_nodes: usize,
) -> AstGraph {
    let mut g = AstGraph::default();
    if max_nodes == 0 {
        return g;
    }
    let rel = |b: usize| u32::try_from(b.saturating_sub(base_byte)).unwrap_or(u32::MAX);
    // (node, index it was given); a node is numbered when enqueued so indices are BFS order.
    let mut queue: VecDeque<(Node<'_>, u32)> = VecDeque::new();
    let push = |g: &mut AstGraph, node: Node<'_>| -> u32 {
        let idx = g.kinds.len() as u32;
        g.kinds.push(lang.node_kind_id(&node));
        g.spans.push((rel(node.start_byte()), rel(node.end_byte())));
        g.child_counts.push(0);
        idx
    };
    let idx = push(&mut g, root);
    queue.push_back((root, idx));
    let mut cursor = root.walk();
    let mut kids: Vec<Node<'_>> = Vec::new();
    while let Some((node, idx)) = queue.pop_front() {
        // Follow a single-child chain down to its bottom; the chain is one node of the graph.
        named_children(node, &mut cursor, &mut kids);
        while kids.len() == 1 {
            let only = kids[0];
            named_children(only, &mut cursor, &mut kids);
        }
        g.child_counts[idx as usize] = kids.len() as u32;
        for &child in &kids {
            if g.kinds.len() >= max_nodes {
                break;
            }
            let c = push(&mut g, child);
            g.edges.push((idx, c));
            queue.push_back((child, c));
        }
    }
    g
}
