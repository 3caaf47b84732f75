//! Whether a switch moves the established connections to the new broker
//! (protocol 2) or drains them, decided from what both brokers said of
//! themselves; and why, for the report.

use emqx_handoff::broker::Schemas;

/// What one broker said of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Its release.
    pub version: String,
    /// The handoff protocol spoken with it.
    pub protocol: u32,
    /// Its state schemas (none below protocol 2).
    pub schemas: Schemas,
}

/// How the established connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Moved in this schema.
    Move { schema: String },
    /// Drained and closed, for this reason.
    Drain { reason: String },
}

/// Why the old broker cannot move its connections at all, whatever the
/// new one imports: then the helper does not even make a channel.
pub fn cannot_export(old: &Side) -> Option<String> {
    if old.protocol < 2 {
        return Some(format!(
            "{} speaks handoff protocol {} (sessions move from protocol 2)",
            old.version, old.protocol
        ));
    }
    if old.schemas.exports.is_empty() {
        return Some(format!("{} exports no session state", old.version));
    }
    None
}

/// The route: the first schema the old broker exports that the new one
/// imports.
pub fn route(old: &Side, new: &Side) -> Route {
    if let Some(reason) = cannot_export(old) {
        return Route::Drain { reason };
    }
    if new.protocol < 2 {
        return Route::Drain {
            reason: format!(
                "{} speaks handoff protocol {} (sessions move from protocol 2)",
                new.version, new.protocol
            ),
        };
    }
    match old
        .schemas
        .exports
        .iter()
        .find(|s| new.schemas.imports.contains(s))
    {
        Some(schema) => Route::Move {
            schema: schema.clone(),
        },
        None => Route::Drain {
            reason: format!(
                "{} cannot import {}",
                new.version,
                old.schemas.exports.join(", ")
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(version: &str, protocol: u32, exports: &[&str], imports: &[&str]) -> Side {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Side {
            version: version.into(),
            protocol,
            schemas: Schemas {
                exports: v(exports),
                imports: v(imports),
            },
        }
    }

    #[test]
    fn a_common_schema_moves_the_first_the_old_broker_names() {
        let old = side("5.0.0", 2, &["ref/2", "ref/1"], &[]);
        let new = side("5.0.1", 2, &[], &["ref/1", "ref/2"]);
        assert_eq!(
            route(&old, &new),
            Route::Move {
                schema: "ref/2".into()
            }
        );
    }

    #[test]
    fn every_reason_to_drain_is_named() {
        let new = side("5.0.1", 2, &[], &["ref/1"]);
        let cases = [
            (
                side("5.0.0", 1, &[], &[]),
                new.clone(),
                "5.0.0 speaks handoff protocol 1 (sessions move from protocol 2)",
            ),
            (
                side("5.0.0", 2, &[], &["ref/1"]),
                new.clone(),
                "5.0.0 exports no session state",
            ),
            (
                side("5.0.0", 2, &["ref/1"], &[]),
                side("4.4.0", 1, &[], &[]),
                "4.4.0 speaks handoff protocol 1 (sessions move from protocol 2)",
            ),
            (
                side("5.0.2", 2, &["ref/2", "ref/3"], &[]),
                new,
                "5.0.1 cannot import ref/2, ref/3",
            ),
        ];
        for (old, new, reason) in cases {
            assert_eq!(
                route(&old, &new),
                Route::Drain {
                    reason: reason.into()
                }
            );
        }
    }
}
