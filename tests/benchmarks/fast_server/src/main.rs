//! Benchmark-only OPC UA server (async-opcua, compiled) shaped like collectors/opcua/tests/node_server/server.js:
//! variables `ns=<urn:wattline:simulator>;s=north/l1/m<i>/Extra<kkkk>` (Double), every one set to a new value (a
//! running sequence number) with a source timestamp each `period` ms, all in one `set_values` call per tick.
//!
//! usage: wattline-fast-opcua-server --port P [--machines N] [--extra K] [--period MS] [--max-notifications N]
//! Prints "READY opc.tcp://127.0.0.1:P/" when serving. Anonymous, security None only (a benchmark server).

use std::time::Duration;

use opcua::server::{
    diagnostics::NamespaceMetadata,
    node_manager::memory::{simple_node_manager, SimpleNodeManager},
    ServerBuilder,
};
use opcua::nodes::VariableBuilder;
use opcua::types::{DataTypeId, DataValue, DateTime, NodeId, ObjectId, StatusCode, Variant};

const NS_URI: &str = "urn:wattline:simulator";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("numeric argument"))
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let port = arg("port", 4840) as u16;
    let machines = arg("machines", 10);
    let extra = arg("extra", 1000);
    let period = arg("period", 200);
    let max_notifications = arg("max-notifications", 0);

    let mut builder = ServerBuilder::new_anonymous("Wattline benchmark server")
        .application_uri("urn:wattline:fast-bench-server")
        .host("127.0.0.1")
        .port(port)
        .max_message_size(64 * 1024 * 1024)
        .max_chunk_count(4096)
        .with_node_manager(simple_node_manager(
            NamespaceMetadata { namespace_uri: NS_URI.to_owned(), ..Default::default() },
            "wattline",
        ));
    {
        let limits = builder.limits_mut();
        limits.max_array_length = 1_000_000;
        limits.subscriptions.max_monitored_items_per_sub = 1_000_000;
        limits.subscriptions.max_notifications_per_publish = max_notifications;
        limits.subscriptions.max_queued_notifications = 1_000;
        limits.subscriptions.max_pending_publish_requests = 100;
        limits.subscriptions.max_publish_requests_per_subscription = 20;
    }
    let (server, handle) = builder.build()?;
    let manager = handle.node_managers().get_of_type::<SimpleNodeManager>().expect("node manager");
    let ns = handle.get_namespace_index(NS_URI).expect("namespace");
    let mut ids: Vec<NodeId> = Vec::new();
    {
        let mut space = manager.address_space().write();
        for m in 0..machines {
            let folder = NodeId::new(ns, format!("north/l1/m{m}"));
            space.add_folder(&folder, format!("m{m}"), format!("m{m}"), &ObjectId::ObjectsFolder.into());
            let mut vars = Vec::new();
            for k in 0..extra {
                let id = NodeId::new(ns, format!("north/l1/m{m}/Extra{k:04}"));
                vars.push(
                    VariableBuilder::new(&id, format!("Extra{k:04}"), format!("Extra{k:04}"))
                        .data_type(DataTypeId::Double)
                        .value(0.0f64)
                        .build(),
                );
                ids.push(id);
            }
            space.add_variables(vars, &folder);
        }
    }
    let subscriptions = handle.subscriptions().clone();
    let updater = manager.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(period));
        let mut seq: f64 = 0.0;
        loop {
            tick.tick().await;
            let now = DateTime::now();
            let values: Vec<DataValue> = ids
                .iter()
                .map(|_| {
                    seq += 1.0;
                    DataValue {
                        value: Some(Variant::Double(seq)),
                        status: Some(StatusCode::Good),
                        source_timestamp: Some(now),
                        server_timestamp: Some(now),
                        ..Default::default()
                    }
                })
                .collect();
            let _ = updater.set_values(&subscriptions, ids.iter().zip(values).map(|(id, dv)| (id, None, dv)));
        }
    });
    let shutdown = handle.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        shutdown.cancel();
    });
    println!("READY opc.tcp://127.0.0.1:{port}/");
    server.run().await
}
