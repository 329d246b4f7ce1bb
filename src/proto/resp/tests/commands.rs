//! Argument vectors to commands: arity, names, Redis's error texts.

use super::*;

#[test]
fn each_command() {
    use Command as C;
    let cases: Vec<(&[&str], Command)> = vec![
        (&["PING"], C::Ping(None)),
        (&["PING", "hi"], C::Ping(Some(b("hi")))),
        (&["ECHO", "x"], C::Echo(b("x"))),
        (&["SUBSCRIBE", "a", "b"], C::Subscribe(bs(&["a", "b"]))),
        (&["UNSUBSCRIBE"], C::Unsubscribe(vec![])),
        (&["UNSUBSCRIBE", "a"], C::Unsubscribe(bs(&["a"]))),
        (&["PSUBSCRIBE", "r.*"], C::PSubscribe(bs(&["r.*"]))),
        (&["PUNSUBSCRIBE"], C::PUnsubscribe(vec![])),
        (
            &["PUNSUBSCRIBE", "a*", "b*"],
            C::PUnsubscribe(bs(&["a*", "b*"])),
        ),
        (
            &["PUBLISH", "c", "m"],
            C::Publish {
                channel: b("c"),
                payload: b("m"),
            },
        ),
        (
            &["HELLO"],
            C::Hello {
                proto: None,
                auth: None,
                setname: None,
            },
        ),
        (
            &["HELLO", "2"],
            C::Hello {
                proto: Some(Proto::Resp2),
                auth: None,
                setname: None,
            },
        ),
        (
            &["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"],
            C::Hello {
                proto: Some(Proto::Resp3),
                auth: Some((b("u"), b("p"))),
                setname: Some(b("n")),
            },
        ),
        (
            &["AUTH", "pw"],
            C::Auth {
                user: None,
                password: b("pw"),
            },
        ),
        (
            &["AUTH", "ann", "pw"],
            C::Auth {
                user: Some(b("ann")),
                password: b("pw"),
            },
        ),
        (&["CLIENT", "SETNAME", "me"], C::ClientSetName(b("me"))),
        (&["CLIENT", "GETNAME"], C::ClientGetName),
        (&["CLIENT", "ID"], C::ClientId),
        (&["CLIENT", "INFO"], C::ClientInfo),
        (
            &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"],
            C::ClientOther("setinfo".into()),
        ),
        (
            &["CLIENT", "NO-EVICT", "on"],
            C::ClientOther("no-evict".into()),
        ),
        (&["SELECT", "0"], C::Select(0)),
        (&["COMMAND"], C::Command(CommandSub::List)),
        (&["COMMAND", "DOCS"], C::Command(CommandSub::Docs)),
        (&["COMMAND", "DOCS", "get"], C::Command(CommandSub::Docs)),
        (&["COMMAND", "COUNT"], C::Command(CommandSub::Count)),
        (
            &["COMMAND", "INFO", "a", "b"],
            C::Command(CommandSub::Info(2)),
        ),
        (&["QUIT"], C::Quit),
        (&["RESET"], C::Reset),
        (&["INFO"], C::Info(vec![])),
        (&["INFO", "server"], C::Info(bs(&["server"]))),
    ];
    for (words, want) in cases {
        assert_eq!(both(words), want, "{words:?}");
        assert_eq!(want.error_text(), None);
    }
}

#[test]
fn http_request_lines_are_a_security_warning() {
    for name in ["POST", "post", "Post", "Host:", "HOST:", "host:"] {
        assert_eq!(
            Command::from_args(bs(&[name, "/", "HTTP/1.1"])),
            Command::SecurityWarning,
            "{name}"
        );
        assert_eq!(Command::from_args(bs(&[name])), Command::SecurityWarning);
    }
    for name in ["GET", "Host", "posts", "host:x"] {
        assert!(
            matches!(Command::from_args(bs(&[name])), Command::Unknown { .. }),
            "{name}"
        );
    }
}

#[test]
fn names_are_case_insensitive() {
    assert_eq!(both(&["pInG"]), Command::Ping(None));
    assert_eq!(both(&["subscribe", "A"]), Command::Subscribe(bs(&["A"])));
    assert_eq!(
        both(&["Client", "sEtNaMe", "x"]),
        Command::ClientSetName(b("x"))
    );
    assert_eq!(
        both(&["hello", "3", "setname", "x"]),
        both(&["HELLO", "3", "SETNAME", "x"])
    );
    assert_eq!(
        both(&["command", "count"]),
        Command::Command(CommandSub::Count)
    );
}

#[test]
fn arity_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["SUBSCRIBE"], "subscribe"),
        (&["PSUBSCRIBE"], "psubscribe"),
        (&["PING", "a", "b"], "ping"),
        (&["ECHO"], "echo"),
        (&["PUBLISH", "c"], "publish"),
        (&["PUBLISH", "c", "m", "x"], "publish"),
        (&["SELECT"], "select"),
        (&["RESET", "x"], "reset"),
        (&["AUTH"], "auth"),
        (&["CLIENT"], "client"),
        (&["CLIENT", "SETNAME"], "client|setname"),
        (&["CLIENT", "ID", "x"], "client|id"),
        (&["CLIENT", "SETINFO", "LIB-NAME"], "client|setinfo"),
        (&["COMMAND", "COUNT", "x"], "command|count"),
    ];
    for (words, name) in cases {
        assert_eq!(both(words), Command::WrongArity(name.to_string()));
        let want = format!("ERR wrong number of arguments for '{name}' command");
        assert_eq!(err_text(words), want);
    }
}

#[test]
fn unknown_command_text_matches_redis() {
    let cmd = both(&["FOO", "a", "b"]);
    assert_eq!(
        cmd,
        Command::Unknown {
            name: "FOO".into(),
            args_preview: "'a' 'b' ".into()
        }
    );
    assert_eq!(
        cmd.error_text().unwrap(),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    );
    let text = err_text(&["foo"]);
    assert_eq!(
        text,
        "ERR unknown command 'foo', with args beginning with: "
    );
    // Preview stops once 128 bytes are written; each arg cut to what is left.
    let long = "x".repeat(200);
    let text = err_text(&["nope", "ab", &long, "never"]);
    let want = format!("'ab' '{}' ", "x".repeat(128 - 5));
    assert_eq!(
        text,
        format!("ERR unknown command 'nope', with args beginning with: {want}")
    );
    // Newlines from binary args never reach the reply.
    let cmd = one(&mb(&[b"x\r\ny", b"a\nb", b"c\0d"]));
    assert_eq!(
        cmd.error_text().unwrap(),
        "ERR unknown command 'x  y', with args beginning with: 'a b' 'c' "
    );
    assert!(matches!(one(&mb(&[b""])), Command::Unknown { .. }));
}

#[test]
fn argument_errors() {
    assert_eq!(
        err_text(&["HELLO", "4"]),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        err_text(&["HELLO", "1"]),
        "NOPROTO unsupported protocol version"
    );
    let not_int = "ERR Protocol version is not an integer or out of range";
    assert_eq!(err_text(&["HELLO", "three"]), not_int);
    assert_eq!(
        err_text(&["HELLO", "3", "FOO"]),
        "ERR Syntax error in HELLO option 'FOO'"
    );
    assert_eq!(
        err_text(&["HELLO", "3", "AUTH", "u"]),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    let bad_name = "ERR Client names cannot contain spaces, newlines or special characters.";
    assert_eq!(
        one(&mb(&[b"HELLO", b"3", b"SETNAME", b"a b"]))
            .error_text()
            .unwrap(),
        bad_name
    );
    assert_eq!(
        one(&mb(&[b"CLIENT", b"SETNAME", b"a\nb"]))
            .error_text()
            .unwrap(),
        bad_name
    );
    assert_eq!(
        one(b"CLIENT SETNAME ''\r\n"),
        Command::ClientSetName(Bytes::new())
    );
    assert_eq!(
        err_text(&["CLIENT", "KILL", "x"]),
        "ERR unknown subcommand 'KILL'. Try CLIENT HELP."
    );
    assert_eq!(
        err_text(&["command", "foo"]),
        "ERR unknown subcommand 'foo'. Try COMMAND HELP."
    );
    let not_int = "ERR value is not an integer or out of range";
    assert_eq!(err_text(&["SELECT", "x"]), not_int);
    assert_eq!(err_text(&["SELECT", "4294967296"]), not_int);
    assert_eq!(both(&["SELECT", "-1"]), Command::Select(-1));
}
