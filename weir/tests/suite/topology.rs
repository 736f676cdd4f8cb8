//! Topology as data: every running pipeline describes the graph it was built as —
//! each node (role, kind, arbiter, capacity, pool, supervision, breaker) and each
//! edge (ends, ports, capacity) — checked here against what each test built, for
//! a line, a broadcast + merge DAG, a pool, a partition, mux/demux and hubs; and
//! drawn as DOT and Mermaid.

use crate::common;

use std::time::Duration;

use common::*;
use weir::hub::NoSubscriber;
use weir::prelude::*;
use weir::supervisor::policy::{BreakerConfig, Trip};
use weir::{NodeRole, PipelineStats, Topology};

/// What holds for every topology: ids are the indexes of the nodes and of the
/// stats' stages, names and capacities agree with the stats, every port of every
/// node is connected exactly once, and every edge's capacity is its receiver's.
fn check_consistent(t: &Topology, stats: &PipelineStats) {
    assert_eq!(t.pipeline, stats.name);
    assert_eq!(t.nodes.len(), stats.stages.len(), "{t:#?}");
    for (i, (node, stage)) in t.nodes.iter().zip(&stats.stages).enumerate() {
        assert_eq!(node.id, i);
        assert_eq!(node.name, stage.name);
        assert_eq!(node.kind, stage.kind);
        assert_eq!(node.capacity, stage.capacity, "{}", node.name);
        for port in 0..node.inputs {
            let n = t.edges_into(i).filter(|e| e.to_port == port).count();
            assert_eq!(n, 1, "{} in[{port}]", node.name);
        }
        for port in 0..node.outputs {
            let n = t.edges_from(i).filter(|e| e.from_port == port).count();
            assert_eq!(n, 1, "{} out[{port}]", node.name);
        }
        let role = match (node.inputs, node.outputs) {
            _ if node.role == NodeRole::Junction => NodeRole::Junction,
            (0, _) => NodeRole::Source,
            (_, 0) => NodeRole::Sink,
            _ => NodeRole::Stage,
        };
        assert_eq!(node.role, role, "{}", node.name);
    }
    for e in &t.edges {
        assert_eq!(e.capacity, t.nodes[e.to].capacity, "{e:?}");
        assert!(e.from_port < t.nodes[e.from].outputs, "{e:?}");
        assert!(e.to_port < t.nodes[e.to].inputs, "{e:?}");
    }
    // Every node and edge is drawn.
    let dot = t.to_dot();
    let mermaid = t.to_mermaid();
    assert!(dot.contains("rankdir=LR"));
    assert!(mermaid.starts_with("flowchart LR\n"));
    for n in &t.nodes {
        assert!(
            dot.contains(&format!("  n{} [label=\"{}\\n", n.id, n.name)),
            "{dot}"
        );
        assert!(mermaid.contains(&format!("  n{}", n.id)), "{mermaid}");
    }
    for e in &t.edges {
        assert!(
            dot.contains(&format!("  n{} -> n{} ", e.from, e.to)),
            "{dot}"
        );
        assert!(
            mermaid.contains(&format!("  n{} -->|", e.from)),
            "{mermaid}"
        );
    }
    assert_eq!(dot.matches(" -> ").count(), t.edges.len());
    assert_eq!(mermaid.matches("-->|").count(), t.edges.len());
    // And serializes.
    let json = serde_json::to_value(t).unwrap();
    assert_eq!(json["nodes"].as_array().unwrap().len(), t.nodes.len());
    assert_eq!(json["edges"].as_array().unwrap().len(), t.edges.len());
}

/// The nodes as `(name, role, kind)`, by id.
fn nodes(t: &Topology) -> Vec<(&str, NodeRole, &str)> {
    t.nodes
        .iter()
        .map(|n| (n.name.as_str(), n.role, n.kind))
        .collect()
}

/// The edges as `(from, from port, to, to port, capacity)`, by name.
fn edges(t: &Topology) -> Vec<(&str, usize, &str, usize, usize)> {
    t.edges
        .iter()
        .map(|e| {
            (
                t.nodes[e.from].name.as_str(),
                e.from_port,
                t.nodes[e.to].name.as_str(),
                e.to_port,
                e.capacity,
            )
        })
        .collect()
}

use NodeRole::{Junction, Sink, Source, Stage};

#[test]
fn a_linear_flow_is_a_chain_with_its_capacities_and_supervision() {
    let rt = rt1();
    let policy = SupervisionPolicy::default().breaker(BreakerConfig::new(
        Trip::Consecutive(3),
        Duration::from_secs(1),
    ));
    let running = Pipeline::from_iter(0..100_u64)
        .name("numbers")
        .map(|x| x + 1)
        .name("inc")
        .capacity(8)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .try_map(Ok::<u64, Failure>)
        .name("check")
        .filter(|x| x % 2 == 0)
        .name("evens")
        .collect()
        .name("out")
        .named("linear")
        .default_capacity(32)
        .run(&rt)
        .unwrap();
    let t = running.topology();
    let stats = running.stats();
    let done = running.wait().unwrap();
    assert_eq!(done.output.len(), 50);
    assert_eq!(
        nodes(&t),
        [
            ("numbers", Source, "iter"),
            ("inc", Stage, "map"),
            ("check", Stage, "try_map"),
            ("evens", Stage, "filter"),
            ("out", Sink, "collect"),
        ]
    );
    assert_eq!(
        edges(&t),
        [
            ("numbers", 0, "inc", 0, 8),
            ("inc", 0, "check", 0, 32),
            ("check", 0, "evens", 0, 32),
            ("evens", 0, "out", 0, 32),
        ]
    );
    // One arbiter: everything on arbiter 0; only `check` is supervised, with a
    // breaker (closed: it never failed).
    assert!(t.nodes.iter().all(|n| n.arbiter == 0));
    let check = t.node("check").unwrap();
    let sup = check.supervision.expect("supervised");
    assert!(sup.breaker && sup.dead_letters);
    assert_eq!(sup.max_attempts, SupervisionPolicy::default().max_attempts);
    assert_eq!(check.breaker, Some(weir::observe::BreakerState::Closed));
    for name in ["numbers", "inc", "evens", "out"] {
        let n = t.node(name).unwrap();
        assert_eq!((n.supervision, n.breaker), (None, None), "{name}");
    }
    check_consistent(&t, &stats);
    let dot = t.to_dot();
    assert!(dot.starts_with("digraph \"linear\" {"), "{dot}");
    assert!(dot.contains("n0 -> n1 [label=\"8\"];"), "{dot}");
}

#[test]
fn a_broadcast_and_merge_dag_names_every_port() {
    let rt = rt1();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64).name("numbers"));
    let [a, b, c] = g.broadcast(numbers, Broadcast::new(3));
    g.name_stage(a, "fan");
    let a = g.flow(a, |f| f.map(|x| x * 2).name("double"));
    let b = g.flow(b, |f| f.map(|x| x + 1).name("inc"));
    let merged = g.merge([a, b]);
    g.name_stage(merged, "join");
    let both = collect(&mut g, merged);
    let side = collect(&mut g, c);
    g.named("dag").default_capacity(16);
    let running = g.run(&rt).unwrap();
    let controller = running.controller();
    let t = controller.topology();
    check_consistent(&t, &controller.stats());
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(both).len(), 2_000);
    assert_eq!(take(side).len(), 1_000);
    assert_eq!(
        nodes(&t),
        [
            ("numbers", Source, "iter"),
            ("fan", Junction, "broadcast"),
            ("double", Stage, "map"),
            ("inc", Stage, "map"),
            ("join", Junction, "merge"),
            ("collect#5", Sink, "collect"),
            ("collect#6", Sink, "collect"),
        ]
    );
    assert_eq!(
        edges(&t),
        [
            ("numbers", 0, "fan", 0, 16),
            ("fan", 0, "double", 0, 16),
            ("fan", 1, "inc", 0, 16),
            ("double", 0, "join", 0, 16),
            ("inc", 0, "join", 1, 16),
            ("join", 0, "collect#5", 0, 16),
            ("fan", 2, "collect#6", 0, 16),
        ]
    );
    let mermaid = t.to_mermaid();
    assert!(
        mermaid.contains("  n1{{\"fan<br/>broadcast\"}}"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("  n1 -->|\"out[1] · 16\"| n3"),
        "{mermaid}"
    );
}

#[test]
fn a_pool_shows_its_replicas_on_their_arbiters_in_their_group() {
    let rt = Runtime::builder().arbiters(3).build().unwrap();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64).name("numbers"));
    let out = g.pool_map(
        numbers,
        Pool::new(3).name("work").replica_capacity(4),
        || |x: u64| x * 2,
    );
    let out = collect(&mut g, out);
    g.named("pool");
    let running = g.run(&rt).unwrap();
    let controller = running.controller();
    let t = controller.topology();
    check_consistent(&t, &controller.stats());
    running.wait().unwrap();
    assert_eq!(take(out).len(), 1_000);
    // The dispatch and collect junctions belong to the pool too.
    for (name, kind) in [
        ("work.dispatch", "pool-dispatch"),
        ("work.collect", "pool-collect"),
    ] {
        let n = t.node(name).unwrap();
        assert_eq!(
            (n.role, n.kind, n.group.as_deref(), n.replica),
            (Junction, kind, Some("work"), None)
        );
    }
    let replicas: Vec<_> = t.nodes.iter().filter(|n| n.replica.is_some()).collect();
    assert_eq!(replicas.len(), 3, "{t:#?}");
    for (k, r) in replicas.iter().enumerate() {
        assert_eq!(r.name, format!("work-{k}"));
        assert_eq!(r.group.as_deref(), Some("work"));
        assert_eq!(r.replica, Some(k));
        assert_eq!(r.capacity, 4);
        assert_eq!((r.role, r.kind), (Stage, "pool-map"));
        // Each replica on its own arbiter, after the pipeline's first.
        assert_eq!(r.arbiter, (t.nodes[0].arbiter + 1 + k) % 3);
        // Fed by one junction and feeding one junction.
        let into: Vec<_> = t.edges_into(r.id).collect();
        let from: Vec<_> = t.edges_from(r.id).collect();
        assert_eq!((into.len(), from.len()), (1, 1));
        assert_eq!(t.nodes[into[0].from].kind, "pool-dispatch");
        assert_eq!(into[0].from_port, k);
        assert_eq!(t.nodes[from[0].to].kind, "pool-collect");
        assert_eq!(from[0].to_port, k);
    }
}

#[test]
fn a_partition_has_one_edge_per_branch() {
    let rt = rt1();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..300_u64).name("numbers"));
    let [x, y, z] = g.partition(numbers, |x: &u64| (x % 3) as usize);
    g.name_stage(x, "split");
    let outs = [x, y, z].map(|o| collect(&mut g, o));
    g.named("partition").capacity_of(y, 2);
    let running = g.run(&rt).unwrap();
    let controller = running.controller();
    let t = controller.topology();
    check_consistent(&t, &controller.stats());
    running.wait().unwrap();
    for rx in outs {
        assert_eq!(take(rx).len(), 100);
    }
    assert_eq!(nodes(&t)[1], ("split", Junction, "partition"));
    assert_eq!(
        edges(&t),
        [
            // `capacity_of(y, 2)` sizes the input of the stage `y` comes out of.
            ("numbers", 0, "split", 0, 2),
            ("split", 0, "collect#2", 0, weir::DEFAULT_CAPACITY),
            ("split", 1, "collect#3", 0, weir::DEFAULT_CAPACITY),
            ("split", 2, "collect#4", 0, weir::DEFAULT_CAPACITY),
        ]
    );
}

#[test]
fn mux_and_demux_share_one_edge() {
    let rt = rt1();
    let mut g = Graph::new();
    let ins: Vec<Outlet<u64>> = (0..3)
        .map(|i| g.source(Pipeline::from_iter(0..10_u64).name(format!("in{i}"))))
        .collect();
    let muxed = g.mux_with(ins, 4);
    g.name_mux(&muxed, "mux");
    let outs: [Outlet<u64>; 3] = g.demux(muxed);
    g.name_stage(outs[0], "demux");
    let rxs = outs.map(|o| collect(&mut g, o));
    g.named("muxed");
    let running = g.run(&rt).unwrap();
    let controller = running.controller();
    let t = controller.topology();
    check_consistent(&t, &controller.stats());
    running.wait().unwrap();
    for rx in rxs {
        assert_eq!(take(rx).len(), 10);
    }
    let mux = t.node("mux").unwrap();
    let demux = t.node("demux").unwrap();
    assert_eq!(
        (mux.role, mux.kind, mux.inputs, mux.outputs),
        (Junction, "mux", 3, 1)
    );
    assert_eq!(
        (demux.role, demux.kind, demux.inputs, demux.outputs),
        (Junction, "demux", 1, 3)
    );
    let shared: Vec<_> = t.edges_from(mux.id).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].to, demux.id);
    for i in 0..3 {
        let src = t.node(&format!("in{i}")).unwrap();
        let e: Vec<_> = t.edges_from(src.id).collect();
        assert_eq!((e[0].to, e[0].to_port), (mux.id, i));
    }
}

#[test]
fn hubs_are_the_ends_of_the_graph_and_subscribers_do_not_change_it() {
    let rt = rt1();
    let (hub_in, flow) = MergeHub::<u64>::source(8);
    let (runnable, hub_out) = flow
        .map(|x| x * 10)
        .name("scale")
        .broadcast_hub(NoSubscriber::Wait);
    let running = runnable.named("hubs").run(&rt).unwrap();
    let before = running.topology();
    let mut sub = hub_out.subscribe(16, LagPolicy::Block).unwrap();
    let producer = hub_in.attach().unwrap();
    futures::executor::block_on(producer.send(4)).unwrap();
    assert_eq!(futures::executor::block_on(sub.recv()), Some(40));
    // Attached and detached while running: the graph is what was built.
    assert_eq!(running.topology(), before);
    drop(sub);
    drop(producer);
    assert_eq!(running.topology(), before);
    check_consistent(&before, &running.stats());
    assert_eq!(
        nodes(&before),
        [
            ("merge_hub#0", Source, "merge_hub"),
            ("scale", Stage, "map"),
            ("broadcast_hub#2", Sink, "broadcast_hub"),
        ]
    );
    assert_eq!(edges(&before).len(), 2);
    hub_in.close();
    running.wait().unwrap();
}

#[test]
fn a_manager_describes_every_pipeline_by_name() {
    let rt = rt1();
    let manager = weir::manager::PipelineManager::new();
    let (hub_b, flow_b) = MergeHub::<u64>::source(4);
    let (hub_a, flow_a) = MergeHub::<u64>::source(4);
    manager.start("b", flow_b.collect(), &rt).unwrap();
    manager
        .start("a", flow_a.map(|x| x).collect(), &rt)
        .unwrap();
    let all = manager.topologies();
    let names: Vec<_> = all.iter().map(|t| t.pipeline.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!((all[0].nodes.len(), all[0].edges.len()), (3, 2));
    assert_eq!((all[1].nodes.len(), all[1].edges.len()), (2, 1));
    hub_a.close();
    hub_b.close();
    manager.shutdown_all(Duration::from_secs(5));
}

/// A junction's edges carry their own port's credit: behind a broadcast whose
/// one branch is stalled, the stalled edge's credit falls to 0 while the
/// drained branch's is its whole capacity; a stage's one output edge carries
/// the stage's credit.
#[test]
fn a_junctions_edges_carry_each_ports_own_credit() {
    let rt = rt1();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_000_u64).name("numbers"));
    let [fast, stalled] = g.broadcast(numbers, Broadcast::new(2));
    g.name_stage(fast, "fan");
    let _fast = g.sink(fast, |f| f.for_each(|_| {}).name("fast"));
    let _stalled = g.sink(stalled, |f| {
        f.for_each_async(|_| futures::future::pending::<()>())
            .name("stalled")
    });
    g.named("credit").default_capacity(8);
    let running = g.run(&rt).unwrap();
    let controller = running.controller();
    let t = controller.topology();
    let id = |name: &str| t.nodes.iter().position(|n| n.name == name).unwrap();
    let (fan, fast, stalled) = (id("fan"), id("fast"), id("stalled"));
    let credit_to = |to: usize| {
        controller
            .edge_loads()
            .into_iter()
            .find(|e| e.from == fan && e.to == to)
            .unwrap()
            .credit
    };
    let start = std::time::Instant::now();
    while !(credit_to(stalled) == Some(0) && credit_to(fast) == Some(8)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stalled {:?}, fast {:?}",
            credit_to(stalled),
            credit_to(fast)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The source's one edge carries the source's own credit.
    let source = controller
        .edge_loads()
        .into_iter()
        .find(|e| e.to == fan)
        .unwrap();
    let numbers_credit = controller.stats().stage("numbers").unwrap().credit;
    assert_eq!(source.credit, Some(numbers_credit));
    let _ = futures::executor::block_on(running.abort());
}
