//! weir runs inside an actix System the service already has.

use actix::prelude::*;
use weir::prelude::*;

struct Counter(u64);

impl Actor for Counter {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Add(u64);

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.0 += msg.0;
        self.0
    }
}

#[actix::test]
async fn runs_on_the_current_arbiter_next_to_the_services_actors() {
    let counter = Counter(0).start();
    let rt = Runtime::from_current().unwrap();
    assert_eq!(rt.arbiters(), 1);
    let sink = counter.clone();
    let done = Pipeline::from_iter(1..=100_u64)
        .map_async(4, move |x| {
            let sink = sink.clone();
            async move { sink.send(Add(x)).await.unwrap() }
        })
        .collect()
        .run(&rt)
        .unwrap()
        .await
        .unwrap();
    assert_eq!(done.output.last(), Some(&5050));
    assert_eq!(counter.send(Add(0)).await.unwrap(), 5050);
}

#[test]
fn from_current_outside_a_system_is_an_error() {
    assert!(matches!(
        Runtime::from_current(),
        Err(weir::RuntimeError::NoSystem)
    ));
}
