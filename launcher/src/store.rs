//! The report stores `report`, `plan` and `sync` read and write: `--db` values (SQLite paths or
//! `postgresql://` URLs), else `FRACTURE_REPORTS`, else the default SQLite file; and the upload
//! at the end of `fracture run`.

use anyhow::{bail, Result};
use quarantine::reports::{has_events, has_spooled, Pg, Reports, Store};
use std::ffi::OsString;

/// The stores named with `--db`, or the default one.
pub fn locations(db: &[OsString]) -> Result<Vec<Reports>> {
    let locs: Vec<Reports> = if db.is_empty() {
        vec![quarantine::reports::default_location()]
    } else {
        db.iter().map(|d| Reports::parse(d)).collect()
    };
    if locs.contains(&Reports::Off) {
        bail!("crash reports are off (FRACTURE_REPORTS=off): name a store with --db");
    }
    Ok(locs)
}

/// Opens every store named (moving each one's spool into it).
pub fn open_all(db: &[OsString]) -> Result<Vec<Store>> {
    locations(db)?.iter().map(Store::open).collect()
}

/// How a store is named in messages (no password).
pub fn name(l: &Reports) -> String {
    match l {
        Reports::Off => "off".into(),
        Reports::Sqlite(p) => p.display().to_string(),
        Reports::Url(u) => quarantine::reports::redact(u),
    }
}

/// A connection to a PostgreSQL store opened while the program runs, so that the upload at
/// its end pays only for the records (a connection costs milliseconds: PostgreSQL starts a
/// backend per connection).
pub struct Early(Option<std::thread::JoinHandle<Result<Pg>>>);

/// Starts connecting to the store when it is a URL (nothing for SQLite or `off`).
pub fn connect_early() -> Early {
    match Reports::from_env() {
        Reports::Url(u) => Early(
            std::thread::Builder::new()
                .name("fracture-store".into())
                .spawn(move || {
                    Pg::connect(&u).map(|mut pg| {
                        pg.warm();
                        pg
                    })
                })
                .ok(),
        ),
        _ => Early(None),
    }
}

/// After the program (and every helper) is gone. A SQLite store takes the run's spool now
/// only when the run recorded a crash, hang, give-up or mismatch (so the database holds it as
/// soon as `fracture run` returns; opening SQLite after every clean run would cost every run
/// milliseconds). A PostgreSQL store takes the whole spool after every run (SPEC.md
/// "Fleet"), through the connection opened while the program ran (a new one if that one
/// failed or died meanwhile); when it cannot be reached the records stay in the spool, with
/// one warning.
pub fn after_run(pid: u32, early: Early) {
    let loc = Reports::from_env();
    let Some(spool) = loc.spool_dir() else { return };
    let warn = |e: &anyhow::Error| {
        eprintln!(
            "fracture: warning: the crash reports stay in the spool {}: {e:#}",
            spool.display()
        )
    };
    match &loc {
        Reports::Off => {}
        Reports::Sqlite(_) => {
            if has_events(&spool, pid) {
                if let Err(e) = Store::open(&loc) {
                    warn(&e);
                }
            }
        }
        Reports::Url(u) => {
            if !has_spooled(&spool) {
                return;
            }
            let early = early.0.and_then(|h| h.join().ok());
            let pg = match early {
                Some(Ok(pg)) => Ok(pg),
                // Reached, then ended by the server (a restart): a new connection.
                Some(Err(e)) if Pg::ended_by_server(&e) => Pg::connect(u),
                // Refused or unreachable a moment ago: not tried again (nothing is added to
                // the run when the store is down).
                Some(Err(e)) => Err(e),
                None => Pg::connect(u),
            };
            // No "are you there?" round trip first: a connection the server closed while the
            // program ran fails the upload without storing anything, and a new one retries.
            let r = pg.and_then(|mut pg| {
                let r = match pg.ingest(&spool) {
                    Err(e) if Pg::lost_connection(&e) => Pg::connect(u)?.ingest(&spool),
                    r => r,
                };
                // The process ends right after: no goodbye to the server and no shutdown of
                // the client's I/O thread (a millisecond here); the socket closes with us,
                // which a server takes silently from an idle connection.
                std::mem::forget(pg);
                r
            });
            if let Err(e) = r {
                warn(&e);
            }
        }
    }
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// A report store (SQLite path or postgresql:// URL); repeatable [default:
    /// $FRACTURE_REPORTS]
    #[arg(long = "db", value_name = "FILE|URL")]
    db: Vec<OsString>,
}

/// `fracture sync`: moves the spool into the store now; says how many records went.
pub fn sync(args: &SyncArgs) -> Result<i32> {
    for l in locations(&args.db)? {
        let spool = l.spool_dir();
        let s = Store::open(&l)?;
        let st = s.ingested();
        say!(
            "{}: {} new records from {} spool files in {}{}",
            name(&l),
            st.records,
            st.files,
            spool.map_or_else(|| "-".into(), |p| p.display().to_string()),
            if st.skipped > 0 {
                format!(" ({} lines skipped)", st.skipped)
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}
