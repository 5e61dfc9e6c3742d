//! The status registry's messages, inside `herd.status` service frames:
//! a worker tells the primary what it registered (`{"add":{"name":N,
//! "update":BOOL}}`, `{"remove":{"name":N}}`); the primary asks
//! (`"list"`, `{"get":{"name":N}}`, `{"set":{"name":N,"value":V}}`) and the
//! worker answers with the list, the view's value, or `true`, or an error
//! reply saying why not.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The longest status name, in bytes.
pub const MAX_STATUS_NAME: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Tell {
    Add { name: String, update: bool },
    Remove { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Ask {
    List,
    Get {
        name: String,
    },
    Set {
        name: String,
        value: serde_json::Value,
    },
}

pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_STATUS_NAME {
        return Err(Error::Service {
            name: super::SERVICE.into(),
            why: format!(
                "a status name has 1 to {MAX_STATUS_NAME} bytes; {:?} has {}",
                name.chars().take(40).collect::<String>(),
                name.len()
            ),
        });
    }
    Ok(())
}
