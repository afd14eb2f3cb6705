//! The PostgreSQL store (`postgresql://` URLs): the fleet's shared report database.
//!
//! The same tables as the SQLite store, each record keyed by (deployment, spool, offset) so
//! that an upload repeated, or run by several uploaders at once, stores it once (`ON CONFLICT
//! DO NOTHING`). Each spool file goes in one transaction: a failed upload stores nothing of
//! it and leaves it in the spool. Migrations are numbered in `fracture_schema` and applied
//! under a transaction-scoped advisory lock, so that a hundred uploaders meeting a new
//! database create it once. Connections are plain TCP or a Unix socket, without TLS (a
//! fleet store on another host wants a tunnel or a TLS-terminating proxy: not built).

use super::ingest::Sink;
use super::queries::{CallRow, EventRow, Source};
use super::record::Record;
use super::IngestStats;
use anyhow::{Context, Result};
use std::cell::RefCell;
use std::time::Duration;

/// Schema migrations, in order; never edited once released.
const MIGRATIONS: &[&str] = &["
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment TEXT NOT NULL, spool TEXT NOT NULL, \"offset\" BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL, program TEXT NOT NULL, build_id TEXT NOT NULL,
    pid BIGINT NOT NULL, process TEXT NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
    signal BIGINT NOT NULL, fault_addr TEXT NOT NULL, outcome TEXT NOT NULL,
    env TEXT NOT NULL, detail TEXT NOT NULL, frames TEXT NOT NULL, backtrace TEXT NOT NULL,
    UNIQUE (deployment, spool, \"offset\")
);
CREATE TABLE runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment TEXT NOT NULL, spool TEXT NOT NULL, \"offset\" BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL, program TEXT NOT NULL, build_id TEXT NOT NULL,
    pid BIGINT NOT NULL, map TEXT NOT NULL, isolated TEXT NOT NULL, exit BIGINT,
    UNIQUE (deployment, spool, \"offset\")
);
CREATE TABLE run_calls (
    run BIGINT NOT NULL REFERENCES runs(id),
    process TEXT NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
    calls BIGINT NOT NULL, crashes BIGINT NOT NULL
);
CREATE INDEX events_module ON events (module, function);
CREATE INDEX events_build ON events (build_id);
"];

/// The advisory lock migrations are applied under ("frac").
const MIGRATION_LOCK: i64 = 0x6672_6163;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One statement for the whole file, so one round trip (an upload sits on the path of
/// `fracture run`'s exit), and atomic without a transaction around it: the file's
/// events and runs as arrays, the runs' calls joined to the runs actually inserted (a
/// run already stored keeps its calls once).
pub(super) const UPLOAD: &str = "WITH e AS (
       INSERT INTO events (deployment, spool, \"offset\", time, program, build_id, pid,
         process, module, function, signal, fault_addr, outcome, env, detail, frames,
         backtrace)
       SELECT u.deployment, $1, u.off, u.time, u.program, u.build_id, u.pid, u.process,
         u.module, u.function, u.signal, u.fault_addr, u.outcome, u.env, u.detail,
         u.frames, u.backtrace
       FROM unnest($2::text[], $3::int8[], $4::float8[], $5::text[], $6::text[],
         $7::int8[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::text[],
         $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
         AS u(deployment, off, time, program, build_id, pid, process, module, function,
           signal, fault_addr, outcome, env, detail, frames, backtrace)
       ON CONFLICT (deployment, spool, \"offset\") DO NOTHING RETURNING 1),
     r AS (
       INSERT INTO runs (deployment, spool, \"offset\", time, program, build_id, pid, map,
         isolated, exit)
       SELECT u.deployment, $1, u.off, u.time, u.program, u.build_id, u.pid, u.map,
         u.isolated, u.exit
       FROM unnest($18::text[], $19::int8[], $20::float8[], $21::text[], $22::text[],
         $23::int8[], $24::text[], $25::text[], $26::int8[])
         AS u(deployment, off, time, program, build_id, pid, map, isolated, exit)
       ON CONFLICT (deployment, spool, \"offset\") DO NOTHING
       RETURNING id, \"offset\"),
     c AS (
       INSERT INTO run_calls (run, process, module, function, calls, crashes)
       SELECT r.id, u.process, u.module, u.function, u.calls, u.crashes
       FROM r JOIN unnest($27::int8[], $28::text[], $29::text[], $30::text[],
         $31::int8[], $32::int8[])
         AS u(off, process, module, function, calls, crashes) ON u.off = r.\"offset\"
       RETURNING 1)
   SELECT (SELECT COUNT(*) FROM e) + (SELECT COUNT(*) FROM r)";

/// The parameter types of [`UPLOAD`], in order: the spool's name, then one letter a column
/// (t text[], i int8[], f float8[]) of the events (deployment, offset, time, program,
/// build_id, pid, process, module, function, signal, fault_addr, outcome, env, detail,
/// frames, backtrace), the runs (deployment, offset, time, program, build_id, pid, map,
/// isolated, exit) and the runs' calls (run offset, process, module, function, calls,
/// crashes).
fn upload_types() -> Vec<postgres::types::Type> {
    use postgres::types::Type;
    let columns = "tifttitttitttttt"
        .chars()
        .chain("tifttitti".chars())
        .chain("itttii".chars());
    std::iter::once(Type::TEXT)
        .chain(columns.map(|c| match c {
            'i' => Type::INT8_ARRAY,
            'f' => Type::FLOAT8_ARRAY,
            _ => Type::TEXT_ARRAY,
        }))
        .collect()
}

pub struct Pg {
    client: RefCell<postgres::Client>,
    /// [`UPLOAD`], prepared as soon as the connection is made: parsing it loads the tables'
    /// catalog entries into a fresh backend (milliseconds), which `fracture run` does while
    /// the program runs, not on its exit path.
    upload: postgres::Statement,
    /// The URL without its password.
    pub name: String,
    pub ingested: IngestStats,
}

/// `url` as messages may show it: user, hosts, ports and database from the parsed URL, the
/// password (in the user part or a `password=` parameter) as `***`, no other parameters.
/// A URL that does not parse shows only its scheme and host part without any user part.
pub fn redact(url: &str) -> String {
    let scheme = url.split_once("://").map_or("postgresql", |(s, _)| s);
    // An '@' in a host: the URL held an unencoded '@' in its password, which the parser
    // split at the first one; show it the way a URL that does not parse is shown.
    let parsed = url.parse::<postgres::Config>().ok().filter(|c| {
        !c.get_hosts()
            .iter()
            .any(|h| matches!(h, postgres::config::Host::Tcp(t) if t.contains('@')))
    });
    match parsed {
        Some(c) => {
            let user = match (c.get_user(), c.get_password().is_some()) {
                (Some(u), true) => format!("{u}:***@"),
                (Some(u), false) => format!("{u}@"),
                (None, true) => ":***@".to_string(),
                (None, false) => String::new(),
            };
            let ports = c.get_ports();
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let h = match h {
                        postgres::config::Host::Tcp(h) => h.clone(),
                        postgres::config::Host::Unix(p) => p.display().to_string(),
                    };
                    match ports.get(i).or(ports.first()) {
                        Some(p) => format!("{h}:{p}"),
                        None => h,
                    }
                })
                .collect();
            format!(
                "{scheme}://{user}{}/{}",
                hosts.join(","),
                c.get_dbname().unwrap_or("")
            )
        }
        None => {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}/...")
        }
    }
}

/// SQLSTATEs worth waiting out: too many connections, the server starting or recovering.
fn transient(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::TOO_MANY_CONNECTIONS
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

impl Pg {
    /// Connects (waiting out a full server for up to 30 s, never a refused one), applies
    /// missing migrations and ingests the local spool at `spool`.
    pub fn open(url: &str, spool: Option<&std::path::Path>) -> Result<Pg> {
        let mut pg = Pg::connect(url)?;
        if let Some(dir) = spool {
            pg.ingest(dir)?;
        }
        Ok(pg)
    }

    /// Connects and applies missing migrations.
    pub fn connect(url: &str) -> Result<Pg> {
        let name = redact(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} is not a PostgreSQL URL"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("fracture");
        }
        // An uploader must never wait for good: a stopped peer holding the same records
        // (lock_timeout), a statement stuck (statement_timeout), a peer gone silent
        // (keepalives) each end the upload, and the records stay in the spool.
        if config.get_options().is_none() {
            config.options("-c lock_timeout=10000 -c statement_timeout=30000");
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let t0 = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        let mut client = loop {
            match config.connect(postgres::NoTls) {
                Ok(c) => break c,
                Err(e) if transient(&e) && t0.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("cannot connect to the report store {name}"))
                }
            }
        };
        migrate(&mut client).with_context(|| format!("{name} is not a fracture report store"))?;
        let upload = client
            .prepare_typed(UPLOAD, &upload_types())
            .with_context(|| format!("{name} is not a fracture report store"))?;
        Ok(Pg {
            client: RefCell::new(client),
            upload,
            name,
            ingested: IngestStats::default(),
        })
    }

    /// Runs the upload statement once on a run and a call, in a transaction rolled back: a
    /// fresh backend plans it and opens the tables, their indexes and the foreign key's check
    /// (about a millisecond here), which `fracture run` has done while the program ran
    /// instead of on its exit path. Errors are left to the upload itself.
    pub fn warm(&mut self) {
        let run = Record::Run(super::record::Run {
            calls: vec![super::record::Call::default()],
            ..Default::default()
        });
        let upload = &self.upload;
        let c = self.client.get_mut();
        // The identity values the rolled-back rows drew are skipped, which is harmless.
        if let Ok(mut tx) = c.transaction() {
            let _ = upload_file(&mut tx, upload, "", &[(0, run)]);
            let _ = tx.rollback();
        }
    }

    /// Moves the spool at `dir` into the store (what it did: [`Pg::ingested`]).
    pub fn ingest(&mut self, dir: &std::path::Path) -> Result<()> {
        self.ingested = super::ingest::ingest_dir(dir, self)
            .with_context(|| format!("uploading the spool {} to {}", dir.display(), self.name))?;
        Ok(())
    }

    /// True when `e` says the connection is gone, not that the server refused a statement:
    /// no SQLSTATE (the socket), a connection exception (08) or an operator's intervention
    /// (57: the backend was terminated, the server restarts). One that sat idle while a
    /// program ran may have been ended meanwhile, and a new one is worth one try.
    pub fn lost_connection(e: &anyhow::Error) -> bool {
        pg_errors(e).any(|p| {
            p.is_closed()
                || p.code()
                    .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57"))
        })
    }

    /// True when `e` says a server that was reached ended the connection (it was closed, or
    /// the backend terminated): unlike a refused or unreachable server, one that may well
    /// take a new connection at once.
    pub fn ended_by_server(e: &anyhow::Error) -> bool {
        pg_errors(e).any(|p| {
            p.is_closed() || reset(p) || p.code().is_some_and(|c| c.code().starts_with("57"))
        })
    }
}

/// True when `p` is the socket of a reached server reset or cut under a statement: a backend
/// terminated between two statements of the connection's set-up (the early connection's
/// migration check, its prepare) ends it this way, not as a closed connection or a 57 error.
fn reset(p: &postgres::Error) -> bool {
    use std::io::ErrorKind::*;
    std::error::Error::source(p)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            )
        })
}

/// The PostgreSQL errors in `e`'s chain.
fn pg_errors(e: &anyhow::Error) -> impl Iterator<Item = &postgres::Error> {
    e.chain()
        .filter_map(|c| c.downcast_ref::<postgres::Error>())
}

/// Applies the migrations the store lacks.
fn migrate(c: &mut postgres::Client) -> Result<()> {
    {
        // The usual case, one round trip: the store is up to date (a missing table is an
        // error here, and then the locked path below creates it).
        if let Ok(row) = c.query_one("SELECT MAX(version) FROM fracture_schema", &[]) {
            if row.get::<_, Option<i32>>(0) == Some(MIGRATIONS.len() as i32) {
                return Ok(());
            }
        }
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS fracture_schema (
                 version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let have: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM fracture_schema", &[])?
            .get(0);
        if have as usize > MIGRATIONS.len() {
            anyhow::bail!("schema version {have} is newer than this fracture knows");
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have.max(0) as usize) {
            tx.batch_execute(m)
                .with_context(|| format!("schema migration {}", i + 1))?;
            tx.execute(
                "INSERT INTO fracture_schema (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Sink for Pg {
    fn refused(&self, e: &anyhow::Error) -> bool {
        // Data exceptions (22: bad text, out of range), integrity (23), program limits (54).
        pg_errors(e).any(|p| {
            p.code()
                .is_some_and(|c| ["22", "23", "54"].iter().any(|k| c.code().starts_with(k)))
        })
    }

    fn store_file(&mut self, spool: &str, records: &[(i64, Record)]) -> Result<usize> {
        upload_file(self.client.get_mut(), &self.upload, spool, records)
    }
}

/// Stores one spool file's records with the prepared [`UPLOAD`] on `c` (a connection or a
/// transaction); returns how many were new.
fn upload_file<C: postgres::GenericClient>(
    c: &mut C,
    upload: &postgres::Statement,
    spool: &str,
    records: &[(i64, Record)],
) -> Result<usize> {
    use postgres::types::ToSql;
    let mut events: Vec<(i64, &super::record::Event)> = Vec::new();
    let mut runs: Vec<(i64, &super::record::Run)> = Vec::new();
    for (o, r) in records {
        match r {
            Record::Event(e) => events.push((*o, e)),
            Record::Run(r) => runs.push((*o, r)),
        }
    }
    let texts = |f: &dyn Fn(&super::record::Event) -> &str| -> Vec<&str> {
        events.iter().map(|(_, e)| f(e)).collect()
    };
    let e_dep = texts(&|e| &e.deployment);
    let e_off: Vec<i64> = events.iter().map(|(o, _)| *o).collect();
    let e_time: Vec<f64> = events.iter().map(|(_, e)| e.time).collect();
    let e_prog = texts(&|e| &e.program);
    let e_build = texts(&|e| &e.build_id);
    let e_pid: Vec<i64> = events.iter().map(|(_, e)| e.pid).collect();
    let e_proc = texts(&|e| &e.process);
    let e_mod = texts(&|e| &e.module);
    let e_fn = texts(&|e| &e.function);
    let e_sig: Vec<i64> = events.iter().map(|(_, e)| e.signal).collect();
    let e_addr = texts(&|e| &e.fault_addr);
    let e_out = texts(&|e| &e.outcome);
    let e_env = texts(&|e| &e.env);
    let e_detail = texts(&|e| &e.detail);
    let e_frames = texts(&|e| &e.frames);
    let e_bt = texts(&|e| &e.backtrace);
    let r_dep: Vec<&str> = runs.iter().map(|(_, r)| r.deployment.as_str()).collect();
    let r_off: Vec<i64> = runs.iter().map(|(o, _)| *o).collect();
    let r_time: Vec<f64> = runs.iter().map(|(_, r)| r.time).collect();
    let r_prog: Vec<&str> = runs.iter().map(|(_, r)| r.program.as_str()).collect();
    let r_build: Vec<&str> = runs.iter().map(|(_, r)| r.build_id.as_str()).collect();
    let r_pid: Vec<i64> = runs.iter().map(|(_, r)| r.pid).collect();
    let r_map: Vec<&str> = runs.iter().map(|(_, r)| r.map.as_str()).collect();
    let r_iso: Vec<&str> = runs.iter().map(|(_, r)| r.isolated.as_str()).collect();
    let r_exit: Vec<Option<i64>> = runs.iter().map(|(_, r)| r.exit).collect();
    let calls: Vec<(i64, &super::record::Call)> = runs
        .iter()
        .flat_map(|(o, r)| r.calls.iter().map(move |c| (*o, c)))
        .collect();
    let c_off: Vec<i64> = calls.iter().map(|(o, _)| *o).collect();
    let c_proc: Vec<&str> = calls.iter().map(|(_, c)| c.process.as_str()).collect();
    let c_mod: Vec<&str> = calls.iter().map(|(_, c)| c.module.as_str()).collect();
    let c_fn: Vec<&str> = calls.iter().map(|(_, c)| c.function.as_str()).collect();
    let c_calls: Vec<i64> = calls.iter().map(|(_, c)| c.calls).collect();
    let c_crashes: Vec<i64> = calls.iter().map(|(_, c)| c.crashes).collect();
    let p: [&(dyn ToSql + Sync); 32] = [
        &spool, &e_dep, &e_off, &e_time, &e_prog, &e_build, &e_pid, &e_proc, &e_mod, &e_fn, &e_sig,
        &e_addr, &e_out, &e_env, &e_detail, &e_frames, &e_bt, &r_dep, &r_off, &r_time, &r_prog,
        &r_build, &r_pid, &r_map, &r_iso, &r_exit, &c_off, &c_proc, &c_mod, &c_fn, &c_calls,
        &c_crashes,
    ];
    let mut tries = 0;
    loop {
        match c.query(upload, &p) {
            Ok(rows) => {
                let n: i64 = rows.first().map_or(0, |r| r.get(0));
                return Ok(n as usize);
            }
            // A deadlock or serialization failure with a concurrent uploader: the
            // statement stored nothing, so it is simply sent again.
            Err(e) if transient(&e) && tries < 10 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Source for Pg {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn events(&self) -> Result<Vec<EventRow>> {
        let rows = self.client.borrow_mut().query(
            "SELECT module, function, outcome, signal, program, build_id, deployment, time, detail
             FROM events",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                module: r.get(0),
                function: r.get(1),
                outcome: r.get(2),
                signal: r.get(3),
                program: r.get(4),
                build_id: r.get(5),
                deployment: r.get(6),
                time: r.get(7),
                detail: r.get(8),
            })
            .collect())
    }

    fn calls(&self) -> Result<Vec<CallRow>> {
        // Sums as float8: they cannot overflow (the count saturates where it is used).
        let rows = self.client.borrow_mut().query(
            "SELECT c.module, c.function, r.program, r.build_id, r.deployment,
                    (COALESCE(SUM(c.calls::float8), 0) - COALESCE(SUM(c.crashes::float8), 0))::float8
             FROM run_calls c JOIN runs r ON c.run = r.id
             GROUP BY c.module, c.function, r.program, r.build_id, r.deployment",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| CallRow {
                module: r.get(0),
                function: r.get(1),
                program: r.get(2),
                build_id: r.get(3),
                deployment: r.get(4),
                clean: r.get(5),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_upload_statement_has_a_type_for_each_of_its_parameters() {
        let highest = (1..100)
            .take_while(|n| UPLOAD.contains(&format!("${n}")))
            .last()
            .unwrap_or(0);
        assert_eq!(highest, 32);
        assert_eq!(upload_types().len(), highest);
    }

    use super::{redact, upload_types, UPLOAD};

    #[test]
    fn no_password_survives_redaction_whatever_the_url_looks_like() {
        for (url, want) in [
            ("postgresql://u:s3cret@h:5/db", "postgresql://u:***@h:5/db"),
            ("postgresql://u:p@s3cret@h/db", "postgresql://h/..."),
            (
                "postgresql://h/db?password=s3cret",
                "postgresql://:***@h:5432/db",
            ),
            (
                "postgresql://u@h/db?password=s3cret&application_name=a@b",
                "postgresql://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h:5432/db"),
            (
                "postgresql:///db?host=/run/pg&user=u&password=s3cret",
                "postgresql://u:***@/run/pg/db",
            ),
        ] {
            let r = redact(url);
            assert!(!r.contains("s3cret"), "{url} -> {r}");
            assert_eq!(r, want, "{url}");
        }
        // Unparseable: only the host part, never what precedes an '@'.
        let r = redact("postgresql://u:s3cret@[::1/x?password=s3cret");
        assert!(!r.contains("s3cret"), "{r}");
    }
}
