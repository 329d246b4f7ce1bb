//! Mapping a request's argument vector onto a [`Command`], with Redis's
//! arity rules and its exact error texts.

use bytes::Bytes;

use super::number::string2ll;
use super::version::Proto;

/// Which form of `COMMAND` was sent; [`super::encode::command_reply`] answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandSub {
    /// `COMMAND` or `COMMAND LIST ...`: an empty array.
    List,
    /// `COMMAND DOCS [name ...]`: an empty map (redis-cli then uses its built-in hints).
    Docs,
    /// `COMMAND COUNT`: the number of commands ringcast implements.
    Count,
    /// `COMMAND INFO name...` with that many names: one null per name.
    Info(usize),
}

/// One parsed request. Payloads from multibulk requests are zero-copy slices
/// of the read buffer (they keep its allocation alive: copy anything stored
/// for long, such as channel names kept in a subscription table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `SUBSCRIBE channel [channel ...]` (at least one).
    Subscribe(Vec<Bytes>),
    /// `UNSUBSCRIBE [channel ...]`; empty means all channels.
    Unsubscribe(Vec<Bytes>),
    /// `PSUBSCRIBE pattern [pattern ...]` (at least one).
    PSubscribe(Vec<Bytes>),
    /// `PUNSUBSCRIBE [pattern ...]`; empty means all patterns.
    PUnsubscribe(Vec<Bytes>),
    /// `PUBLISH channel message`.
    Publish {
        /// Channel name.
        channel: Bytes,
        /// Message payload.
        payload: Bytes,
    },
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`, already validated
    /// (protover 2 or 3, name checked).
    Hello {
        /// Requested protocol; `None` keeps the current one.
        proto: Option<Proto>,
        /// `AUTH user pass`, checked before the reply.
        auth: Option<(Bytes, Bytes)>,
        /// Client name to set; an empty name clears it.
        setname: Option<Bytes>,
    },
    /// `AUTH [user] password`.
    Auth {
        /// The user (`None`: `default`).
        user: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `CLIENT SETNAME name`, name validated; an empty name clears it.
    ClientSetName(Bytes),
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT ID`.
    ClientId,
    /// `CLIENT INFO`.
    ClientInfo,
    /// `CLIENT SETINFO|NO-EVICT|NO-TOUCH ...` that client libraries send on
    /// connect; carries the lowercased subcommand. Reply `+OK`.
    ClientOther(String),
    /// `SELECT index`, the index parsed (range not checked: Redis replies
    /// `-ERR DB index is out of range` for one it lacks).
    Select(i64),
    /// `COMMAND [DOCS|COUNT|INFO|LIST ...]`.
    Command(CommandSub),
    /// `QUIT`: reply `+OK` and close.
    Quit,
    /// `RESET`: leave pub/sub, back to RESP2, reply `+RESET`.
    Reset,
    /// `INFO [section ...]`.
    Info(Vec<Bytes>),
    /// A blank inline line or `*0`/`*-1`: send nothing.
    Empty,
    /// Right command, wrong argument count; carries Redis's lowercased full
    /// name (`"subscribe"`, `"client|setname"`). See [`Command::error_text`].
    WrongArity(String),
    /// Not a command ringcast knows. `name` as sent, `args_preview` as
    /// Redis builds it (`'a' 'b' `). See [`Command::error_text`].
    Unknown {
        /// Command name as sent (lossy UTF-8, at most 128 bytes).
        name: String,
        /// Quoted leading arguments, each followed by a space.
        args_preview: String,
    },
    /// A known command with bad arguments; carries the error text without the
    /// leading `-` (e.g. `NOPROTO unsupported protocol version`).
    Rejected(String),
    /// `POST` or `Host:`: the lines of an HTTP request, which a web page can
    /// make a browser send to this port (cross-protocol scripting). As
    /// Redis's `securityWarningCommand`: no reply, close the connection,
    /// run nothing after it.
    SecurityWarning,
}

/// Names of the commands ringcast implements (the `COMMAND COUNT` reply).
pub const COMMAND_NAMES: &[&str] = &[
    "ping",
    "echo",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "publish",
    "hello",
    "auth",
    "client",
    "select",
    "command",
    "quit",
    "reset",
    "info",
];

impl Command {
    /// For the error-only variants (`WrongArity`, `Unknown`, `Rejected`) the
    /// text to pass to [`super::encode::error`], exactly as Redis words it.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Command::WrongArity(name) => Some(format!(
                "ERR wrong number of arguments for '{name}' command"
            )),
            Command::Unknown { name, args_preview } => Some(format!(
                "ERR unknown command '{name}', with args beginning with: {args_preview}"
            )),
            Command::Rejected(text) => Some(text.clone()),
            _ => None,
        }
    }
}

/// Redis's `arity`: positive means exactly, negative means at least.
fn arity_ok(argc: usize, arity: isize) -> bool {
    let want = arity.unsigned_abs();
    if arity >= 0 {
        argc == want
    } else {
        argc >= want
    }
}

/// At most 128 bytes of `b` as lossy UTF-8 with CR/LF mapped to spaces
/// (Redis's `%.128s` plus the newline scrubbing of its error replies).
fn show(b: &[u8]) -> String {
    let b = b.get(..128).unwrap_or(b);
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

/// Redis's `validateClientName`: printable ASCII without spaces.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

impl Command {
    /// Maps an argument vector (name first) onto a command.
    pub fn from_args(mut args: Vec<Bytes>) -> Command {
        if args.is_empty() {
            return Command::Empty;
        }
        let name = args.remove(0);
        let argc = args.len() + 1;
        let mut lower = [0u8; 12];
        let key = match lower.get_mut(..name.len()) {
            Some(k) => {
                k.copy_from_slice(&name);
                k.make_ascii_lowercase();
                &*k
            }
            None => &[][..],
        };
        let (full, arity): (&str, isize) = match key {
            b"ping" => ("ping", -1),
            b"echo" => ("echo", 2),
            b"subscribe" => ("subscribe", -2),
            b"unsubscribe" => ("unsubscribe", -1),
            b"psubscribe" => ("psubscribe", -2),
            b"punsubscribe" => ("punsubscribe", -1),
            b"publish" => ("publish", 3),
            b"hello" => ("hello", -1),
            b"auth" => ("auth", -2),
            b"client" => ("client", -2),
            b"select" => ("select", 2),
            b"command" => ("command", -1),
            b"quit" => ("quit", -1),
            b"reset" => ("reset", 1),
            b"info" => ("info", -1),
            b"post" | b"host:" => return Command::SecurityWarning,
            _ => return unknown(&name, &args),
        };
        if !arity_ok(argc, arity) || (full == "ping" && argc > 2) {
            return Command::WrongArity(full.to_owned());
        }
        match full {
            "hello" => return hello(&args),
            "client" => return client(&name, &args),
            "command" => return command(&name, &args),
            _ => {}
        }
        let mut it = args.into_iter();
        match full {
            "ping" => Command::Ping(it.next()),
            "echo" => Command::Echo(it.next().unwrap_or_default()),
            "subscribe" => Command::Subscribe(it.collect()),
            "unsubscribe" => Command::Unsubscribe(it.collect()),
            "psubscribe" => Command::PSubscribe(it.collect()),
            "punsubscribe" => Command::PUnsubscribe(it.collect()),
            "publish" => Command::Publish {
                channel: it.next().unwrap_or_default(),
                payload: it.next().unwrap_or_default(),
            },
            "select" => match it.next().as_deref().and_then(string2ll) {
                Some(db) if i32::try_from(db).is_ok() => Command::Select(db),
                _ => Command::Rejected("ERR value is not an integer or out of range".into()),
            },
            "quit" => Command::Quit,
            "reset" => Command::Reset,
            "auth" => match (it.next(), it.next(), it.next()) {
                (Some(password), None, _) => Command::Auth {
                    user: None,
                    password,
                },
                (Some(user), Some(password), None) => Command::Auth {
                    user: Some(user),
                    password,
                },
                _ => Command::Rejected("ERR syntax error".into()),
            },
            _ => Command::Info(it.collect()),
        }
    }
}

/// The `Unknown` variant with Redis's argument preview: `'arg' ` per argument
/// while the preview is under 128 bytes, each cut to what is left of 128.
fn unknown(name: &[u8], args: &[Bytes]) -> Command {
    let mut preview = Vec::new();
    for arg in args {
        if preview.len() >= 128 {
            break;
        }
        let room = 128 - preview.len();
        // `%.*s` stops at a NUL.
        let arg = arg.split(|&b| b == 0).next().unwrap_or_default();
        preview.push(b'\'');
        preview.extend_from_slice(arg.get(..room).unwrap_or(arg));
        preview.extend_from_slice(b"' ");
    }
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    Command::Unknown {
        name: show(name),
        args_preview: String::from_utf8_lossy(&preview).replace(['\r', '\n'], " "),
    }
}

fn hello(args: &[Bytes]) -> Command {
    let mut proto = None;
    let mut setname = None;
    let mut auth = None;
    let mut rest = args;
    if let Some((ver, tail)) = args.split_first() {
        proto = match string2ll(ver) {
            Some(2) => Some(Proto::Resp2),
            Some(3) => Some(Proto::Resp3),
            Some(_) => return Command::Rejected("NOPROTO unsupported protocol version".into()),
            None => {
                let msg = "ERR Protocol version is not an integer or out of range";
                return Command::Rejected(msg.into());
            }
        };
        rest = tail;
    }
    while let Some((opt, tail)) = rest.split_first() {
        match tail {
            [user, pass, more @ ..] if opt.eq_ignore_ascii_case(b"auth") => {
                auth = Some((user.clone(), pass.clone()));
                rest = more;
            }
            [name, more @ ..] if opt.eq_ignore_ascii_case(b"setname") => {
                if !valid_client_name(name) {
                    return Command::Rejected(BAD_NAME.into());
                }
                setname = Some(name.clone());
                rest = more;
            }
            _ => {
                let opt = opt.split(|&b| b == 0).next().unwrap_or_default();
                let msg = format!("ERR Syntax error in HELLO option '{}'", show(opt));
                return Command::Rejected(msg);
            }
        }
    }
    Command::Hello {
        proto,
        auth,
        setname,
    }
}

fn unknown_subcommand(container: &[u8], sub: &[u8]) -> Command {
    let sub = sub.split(|&b| b == 0).next().unwrap_or_default();
    let cmd = show(container).to_ascii_uppercase();
    Command::Rejected(format!(
        "ERR unknown subcommand '{}'. Try {cmd} HELP.",
        show(sub)
    ))
}

/// `CLIENT <sub> ...`; `args` excludes `CLIENT` and has at least one element.
fn client(name: &[u8], args: &[Bytes]) -> Command {
    let Some((sub, rest)) = args.split_first() else {
        return Command::WrongArity("client".into());
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let (want, cmd) = match lower.as_str() {
        "setname" => match rest {
            [n] if !valid_client_name(n) => return Command::Rejected(BAD_NAME.into()),
            [n] => (1, Command::ClientSetName(n.clone())),
            _ => (1, Command::Empty),
        },
        "getname" => (0, Command::ClientGetName),
        "id" => (0, Command::ClientId),
        "info" => (0, Command::ClientInfo),
        "setinfo" => (2, Command::ClientOther(lower.clone())),
        "no-evict" | "no-touch" => (1, Command::ClientOther(lower.clone())),
        _ => return unknown_subcommand(name, sub),
    };
    if rest.len() == want {
        cmd
    } else {
        Command::WrongArity(format!("client|{lower}"))
    }
}

/// `COMMAND [<sub> ...]`; `args` excludes `COMMAND`.
fn command(name: &[u8], args: &[Bytes]) -> Command {
    let Some((sub, rest)) = args.split_first() else {
        return Command::Command(CommandSub::List);
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "docs" => Command::Command(CommandSub::Docs),
        "list" => Command::Command(CommandSub::List),
        "info" => Command::Command(CommandSub::Info(rest.len())),
        "count" if rest.is_empty() => Command::Command(CommandSub::Count),
        "count" => Command::WrongArity("command|count".into()),
        _ => unknown_subcommand(name, sub),
    }
}
