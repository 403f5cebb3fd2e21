//! projector-redis, the consumer that dead-letters in the reprocessor's tests (which include this
//! beside `events` and `common`).

use std::path::Path;

use causeway_testcontainers::process::{ServiceProcess, free_port};

/// projector-redis for `world`, its read API on a free port, with `extra` environment; ready.
pub fn start_projector(world: &crate::events::World, extra: &[(&str, &str)]) -> ServiceProcess {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("CAUSEWAY__REDIS__URL", world.stack.redis_url.as_str()),
        ("CAUSEWAY__HTTP__LISTEN", listen.as_str()),
    ];
    env.extend_from_slice(extra);
    world.start_service(
        &crate::common::workspace_bin("projector-redis"),
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../projector-redis/projector-redis.toml"
        )),
        &env,
    )
}
