//! Graph shapes that must be rejected when built, each with the message checked:
//! unconnected ports, ports connected twice, cycles, ports of another graph, and
//! junction arguments out of range. (Connecting ports of different element types
//! does not compile: see the `compile_fail` example on `Graph::connect`.)

use crate::common;

use common::*;
use weir::junction::Merge;
use weir::prelude::*;

fn build_error(g: Graph) -> String {
    g.run(&rt1()).unwrap_err().to_string()
}

#[test]
fn an_unconnected_broadcast_branch_is_rejected_naming_stage_and_port() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64));
    let [a, _b, _c] = g.broadcast(src, Broadcast::new(3));
    g.name_stage(a, "fanout");
    g.sink(a, |f| f.collect());
    let err = g.run(&rt1()).unwrap_err();
    assert!(
        matches!(&err, BuildError::UnconnectedPort { stage, port } if stage == "fanout" && port == "out[1]"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "port `out[1]` of stage `fanout` is not connected"
    );
}

#[test]
fn an_unconnected_junction_input_is_rejected() {
    let mut g = Graph::new();
    let ports = g.junction(Merge::<u64>::new(), 2, 1);
    let src = g.source(Pipeline::from_iter(0..3_u64));
    g.connect(src, ports.inlets[0]);
    g.sink(ports.outlets[0], |f| f.collect());
    assert_eq!(
        build_error(g),
        "port `in[1]` of stage `merge#0` is not connected"
    );
}

#[test]
fn a_flow_output_left_open_is_rejected() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64).map(|x| x + 1).name("plus"));
    let _ = src;
    assert_eq!(
        build_error(g),
        "port `out` of stage `plus` is not connected"
    );
}

#[test]
fn an_output_connected_twice_is_rejected() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64).name("numbers"));
    g.sink(src, |f| f.collect());
    g.sink(src, |f| f.collect());
    let msg = build_error(g);
    assert!(
        msg.starts_with("port `out` of stage `numbers` is connected 2 times"),
        "{msg}"
    );
    assert!(
        msg.contains("broadcast"),
        "the message says what to do: {msg}"
    );
}

#[test]
fn an_input_connected_twice_is_rejected() {
    let mut g = Graph::new();
    let ports = g.junction(Merge::<u64>::new(), 1, 1);
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let b = g.source(Pipeline::from_iter(0..3_u64));
    g.connect(a, ports.inlets[0]);
    g.connect(b, ports.inlets[0]);
    g.name_stage(ports.outlets[0], "join");
    g.sink(ports.outlets[0], |f| f.collect());
    assert!(build_error(g).starts_with("port `in[0]` of stage `join` is connected 2 times"),);
}

#[test]
fn a_cycle_is_rejected_naming_the_stages_on_it() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64).name("source"));
    let merge = g.junction(Merge::<u64>::new(), 2, 1);
    g.name_stage(merge.outlets[0], "loop-merge");
    g.connect(src, merge.inlets[0]);
    let doubled = g.flow(merge.outlets[0], |f| f.map(|x| x * 2).name("double"));
    let [back, out] = g.broadcast(doubled, Broadcast::new(2));
    g.name_stage(back, "loop-split");
    g.connect(back, merge.inlets[1]);
    g.sink(out, |f| f.collect());
    let err = g.run(&rt1()).unwrap_err();
    let BuildError::Cycle { stages } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        stages,
        &["loop-merge", "double", "loop-split", "loop-merge"]
    );
    assert_eq!(
        err.to_string(),
        "the graph has a cycle through `loop-merge` → `double` → `loop-split` → `loop-merge`"
    );
}

#[test]
fn a_port_of_another_graph_is_rejected() {
    let mut other = Graph::new();
    let foreign = other.source(Pipeline::from_iter(0..3_u64));
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64));
    let merged = g.merge([src, foreign]);
    g.sink(merged, |f| f.collect());
    assert!(build_error(g).ends_with("belongs to another graph"));
}

#[test]
fn junction_arguments_out_of_range_are_rejected_naming_the_stage() {
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let b = g.source(Pipeline::from_iter(0..3_u64));
    let m = g.merge_prioritized([a, b], Priority::Weighted(vec![2, 0]));
    g.name_stage(m, "prio");
    g.sink(m, |f| f.collect());
    assert_eq!(
        build_error(g),
        "stage `prio`: input 1 has weight 0; use at least 1"
    );

    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let b = g.source(Pipeline::from_iter(0..3_u64));
    let m = g.interleave([a, b], 0);
    g.sink(m, |f| f.collect());
    assert!(build_error(g).contains("interleave segment must be at least 1"));

    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let [x, y] = g.broadcast(a, Broadcast::new(3));
    g.sink(x, |f| f.collect());
    g.sink(y, |f| f.collect());
    assert!(build_error(g).contains("Broadcast::new(3) connected to 2 branches"));
}

#[test]
fn linear_flows_inside_graphs_keep_their_checks() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64));
    let [a, b] = g.partition(src, |x: &u64| (*x % 2) as usize);
    let a = g.flow(a, |f| f.chunks(0).name("batches"));
    g.sink(a, |f| f.collect());
    g.sink(b, |f| f.collect().name("odds").capacity(0));
    assert!(build_error(g).contains("`batches`"));
}
