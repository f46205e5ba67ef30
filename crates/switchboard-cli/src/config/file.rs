//! The settings file (`--config`): TOML read into the same [`ServeOptions`] as the flags,
//! an unknown key or a bad value named in the error, and merged under the flags.

use std::path::Path;

use anyhow::Context as _;

use super::ServeOptions;

impl ServeOptions {
    /// Reads a TOML file of settings.
    pub(crate) fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    pub(crate) fn from_toml(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|e| {
            // toml's message quotes the offending line; say which key it is, too.
            let key = e.span().and_then(|span| {
                let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                let (key, _) = text[start..].split_once('=')?;
                Some(key.trim().to_owned())
            });
            match key {
                Some(key) if !key.is_empty() => anyhow::anyhow!("`{key}`: {e}"),
                _ => anyhow::anyhow!("{e}"),
            }
        })
    }

    /// These settings, with `other`'s where these say nothing.
    pub(crate) fn or(mut self, other: Self) -> Self {
        if self.no_deflate {
            self.deflate = Some(false);
        }
        if self.no_http2 {
            self.http2 = Some(false);
        }
        macro_rules! pick {
            ($($field:ident),* $(,)?) => {
                Self {
                    $($field: self.$field.or(other.$field)),*,
                    no_deflate: false,
                    no_http2: false,
                }
            };
        }
        pick!(
            listen,
            mode,
            tls_cert,
            tls_key,
            tls_self_signed,
            http2,
            http2_max_streams,
            h2c,
            threads,
            event_loop,
            max_connections,
            max_handshakes,
            handshake_rate,
            max_connections_per_ip,
            trusted_proxies,
            message_rate,
            restart_spread,
            max_subscriptions,
            max_message_size,
            max_frame_size,
            max_fragments,
            max_head_size,
            handshake_timeout,
            idle_timeout,
            pong_timeout,
            close_timeout,
            max_send_queue,
            backpressure,
            allowed_origins,
            shutdown_grace,
            deflate,
            deflate_level,
            deflate_threshold,
            history_size,
            history_ttl,
            max_data_size,
            heartbeat,
            jwt_secret,
            api_keys,
            admin_password,
            idempotency_window,
            rules,
            connect_proxy,
            subscribe_proxies,
            publish_proxies,
            proxy_timeout,
            proxy_failure,
            broker,
            broker_cluster,
            broker_ca,
            broker_cert,
            broker_key,
            broker_password,
            broker_connect_timeout,
            broker_response_timeout,
            webhook_url,
            webhook_secret,
            webhook_events,
            webhook_timeout,
            webhook_retry,
            pusher_apps,
            pusher_client_events,
            pusher_webhooks,
            pusher,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_hub::{ChannelRule, EventKind};

    use super::super::{Mode, Policy};
    use super::*;
    use crate::proxies::Failure;
    use crate::units::{Level, Span};

    #[test]
    fn a_size_of_zero_is_refused_with_its_name() {
        let options = ServeOptions::from_toml("max-message-size = 0").unwrap();
        let e = options.check().unwrap_err().to_string();
        assert!(e.contains("--max-message-size 0"), "{e}");
        assert!(
            ServeOptions::from_toml("max-message-size = 1")
                .unwrap()
                .check()
                .is_ok()
        );
        assert!(ServeOptions::default().check().is_ok());
    }

    #[test]
    fn a_file_mirrors_the_flags() {
        let options = ServeOptions::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            mode = "broadcast"
            max-connections = 100
            idle-timeout = "45s"
            pong-timeout = 3
            backpressure = "drop"
            allowed-origins = ["https://example.com"]
            tls-self-signed = true
            history-ttl = "1h"
            rules = ["team:*=authenticated"]
            "#,
        )
        .unwrap();
        assert_eq!(
            options.listen.map(|l| l.0),
            Some("127.0.0.1:9000".parse().unwrap())
        );
        assert!(matches!(options.mode, Some(Mode::Broadcast)));
        assert_eq!(options.max_connections, Some(100));
        assert_eq!(options.idle_timeout, Some(Span(Duration::from_secs(45))));
        assert_eq!(options.pong_timeout, Some(Span(Duration::from_secs(3))));
        assert_eq!(options.backpressure, Some(Policy::Drop));
        assert_eq!(options.tls_self_signed, Some(true));
        assert_eq!(options.history_ttl, Some(Span(Duration::from_secs(3600))));
        assert_eq!(options.rules.map(|r| r.len()), Some(1));
    }

    #[test]
    fn a_lists_key_may_be_its_flags_name_but_not_both() {
        let options = ServeOptions::from_toml(
            r#"
            allowed-origin = ["https://example.com"]
            rule = ["team:*=authenticated", "news=public-read"]
            trusted-proxy = ["10.0.0.0/8"]
            api-key = ["k1"]
            subscribe-proxy = ["team:*=http://127.0.0.1:9/sub"]
            publish-proxy = ["team:*=http://127.0.0.1:9/pub"]
            "#,
        )
        .unwrap();
        assert_eq!(
            options.allowed_origins,
            Some(vec!["https://example.com".to_owned()])
        );
        assert_eq!(options.rules.map(|r| r.len()), Some(2));
        assert_eq!(options.trusted_proxies.map(|r| r.len()), Some(1));
        assert_eq!(options.api_keys, Some(vec!["k1".to_owned()]));
        assert_eq!(options.subscribe_proxies.map(|r| r.len()), Some(1));
        assert_eq!(options.publish_proxies.map(|r| r.len()), Some(1));
        let both = r#"
            rule = ["a=public"]
            rules = ["b=public"]
        "#;
        let err = format!("{:#}", ServeOptions::from_toml(both).unwrap_err());
        assert!(err.contains("rules"), "{err}");
    }

    /// A key the example shows commented out must be one the server takes when a reader
    /// uncomments it (keys are kebab-case; unknown ones are refused).
    #[test]
    fn every_setting_the_example_shows_commented_out_is_taken() {
        let example = include_str!("../../../../docs/serve.example.toml");
        // Up to the Pusher apps' table, whose keys belong to it.
        let top = &example[..example.find("\n# [[pusher.apps]]").unwrap()];
        let mut tried = 0;
        for line in top.lines() {
            let Some(setting) = line.strip_prefix("# ") else {
                continue;
            };
            let setting = setting.split("  #").next().unwrap().trim();
            let Some((key, _)) = setting.split_once(" = ") else {
                continue;
            };
            if !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
            {
                continue;
            }
            let file = format!("{setting}\n{example}");
            if let Err(e) = ServeOptions::from_toml(&file) {
                panic!("`{setting}`, uncommented: {e:#}");
            }
            tried += 1;
        }
        assert!(tried >= 20, "{tried} settings");
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let options =
            ServeOptions::from_toml(include_str!("../../../../docs/serve.example.toml")).unwrap();
        assert!(matches!(options.mode, Some(Mode::Hub)));
        assert_eq!(options.max_connections, Some(25_000));
        assert_eq!(options.max_handshakes, Some(512));
        assert_eq!(options.trusted_proxies, Some(Vec::new()));
        assert_eq!(
            options.max_subscriptions,
            Some(switchboard_hub::HubConfig::default().max_subscriptions)
        );
        assert_eq!(options.idle_timeout, Some(Span(Duration::from_secs(30))));
        assert_eq!(options.backpressure, Some(Policy::Disconnect));
        assert_eq!(options.rules.map(|r| r.len()), Some(0));
        assert_eq!(options.deflate, Some(true));
        assert_eq!(options.deflate_level, Some(Level(1)));
        assert_eq!(options.deflate_threshold, Some(128));
        assert_eq!(options.http2, Some(true));
        let defaults = switchboard::Server::builder();
        assert!(format!("{defaults:?}").contains("http2_max_streams: 100"));
        assert_eq!(options.http2_max_streams, Some(100));
        assert_eq!(options.h2c, Some(false));
        assert_eq!(options.proxy_timeout, Some(Span(Duration::from_secs(1))));
        assert_eq!(options.proxy_failure, Some(Failure::Refuse));
        assert_eq!(options.pusher_client_events, Some(false));
        let webhooks = switchboard_hub::WebhookConfig::new("http://x/".parse().unwrap(), "");
        let events: std::collections::HashSet<_> =
            options.webhook_events.unwrap().into_iter().collect();
        assert_eq!(events, webhooks.events);
        assert_eq!(options.webhook_timeout, Some(Span(webhooks.timeout)));
        assert_eq!(options.webhook_retry, Some(Span(webhooks.retry_for)));
        #[cfg(feature = "redis")]
        {
            let redis = switchboard_hub::RedisConfig::new("redis://x");
            assert_eq!(
                options.broker_connect_timeout,
                Some(Span(redis.connect.connect_timeout))
            );
            assert_eq!(options.broker_response_timeout, Some(Span(redis.timeout)));
            assert_eq!(options.broker_cluster, Some(redis.cluster));
        }
        let defaults = switchboard::DeflateConfig::default();
        assert_eq!(
            (defaults.level, defaults.threshold),
            (1, 128),
            "the example file states the library's defaults"
        );
    }

    #[test]
    fn deflate_is_on_unless_turned_off_by_flag_or_file() {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: ServeOptions,
        }
        let flags = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
                .map(|cli| cli.options)
        };
        let file = |text: &str| ServeOptions::from_toml(text).unwrap();

        assert!(flags(&[]).unwrap().or(file("")).deflate_enabled());
        assert!(
            !flags(&["--no-deflate"])
                .unwrap()
                .or(file(""))
                .deflate_enabled()
        );
        assert!(
            !flags(&["--deflate=false"])
                .unwrap()
                .or(file(""))
                .deflate_enabled()
        );
        assert!(
            !flags(&[])
                .unwrap()
                .or(file("deflate = false"))
                .deflate_enabled()
        );
        // A flag wins over the file, both ways.
        assert!(
            flags(&["--deflate"])
                .unwrap()
                .or(file("deflate = false"))
                .deflate_enabled()
        );
        assert!(
            !flags(&["--no-deflate"])
                .unwrap()
                .or(file("deflate = true"))
                .deflate_enabled()
        );
        assert!(flags(&["--deflate", "--no-deflate"]).is_err());

        assert!(flags(&[]).unwrap().or(file("")).http2_enabled());
        assert!(!flags(&["--no-http2"]).unwrap().or(file("")).http2_enabled());
        assert!(
            !flags(&[])
                .unwrap()
                .or(file("http2 = false"))
                .http2_enabled()
        );
        assert!(
            flags(&["--http2"])
                .unwrap()
                .or(file("http2 = false"))
                .http2_enabled()
        );
        assert!(flags(&["--http2", "--no-http2"]).is_err());
        let options = flags(&[]).unwrap().or(file("http2-max-streams = 8"));
        assert_eq!(options.http2_max_streams, Some(8));
        assert_eq!(flags(&[]).unwrap().or(file("")).h2c, None);
        assert_eq!(flags(&["--h2c"]).unwrap().h2c, Some(true));
        assert_eq!(flags(&[]).unwrap().or(file("h2c = true")).h2c, Some(true));
        let off = flags(&["--h2c=false"]).unwrap().or(file("h2c = true"));
        assert_eq!(off.h2c, Some(false));
        assert!(flags(&["--h2c", "--no-http2"]).is_err());

        let options = flags(&["--deflate-level", "9", "--deflate-threshold", "0"]).unwrap();
        assert_eq!(options.deflate_level, Some(Level(9)));
        assert_eq!(options.deflate_threshold, Some(0));
        assert!(flags(&["--deflate-level", "10"]).is_err());
    }

    #[test]
    fn a_personal_rule_reads_as_the_flag_does() {
        let options = ServeOptions::from_toml(r#"rules = ["user:*=personal"]"#).unwrap();
        let personal = ChannelRule::new("user:*", switchboard_hub::Policy::Personal);
        assert_eq!(options.rules, Some(vec![personal.clone()]));
        assert_eq!("user:*=personal".parse(), Ok(personal));
    }

    #[test]
    fn webhook_events_read_as_the_flag_does() {
        let options =
            ServeOptions::from_toml(r#"webhook-events = ["member_added", "member_removed"]"#)
                .unwrap();
        assert_eq!(
            options.webhook_events,
            Some(vec![EventKind::MemberAdded, EventKind::MemberRemoved])
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = ServeOptions::from_toml("max-conections = 5").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("max-conections"), "{text}");
        assert!(text.contains("unknown field"), "{text}");
    }

    #[test]
    fn a_bad_value_is_an_error_that_names_its_key() {
        for (toml, key) in [
            ("max-connections = \"many\"", "max-connections"),
            ("idle-timeout = \"10 parsecs\"", "idle-timeout"),
            ("backpressure = \"sometimes\"", "backpressure"),
            ("listen = \"nowhere\"", "listen"),
            ("rules = [\"team:*=sometimes\"]", "rules"),
            ("rules = [\"user:42=personal\"]", "rules"),
            ("deflate-level = 12", "deflate-level"),
            ("deflate = \"yes\"", "deflate"),
            ("webhook-events = [\"member_joined\"]", "webhook-events"),
        ] {
            let text = format!("{:#}", ServeOptions::from_toml(toml).unwrap_err());
            assert!(text.contains(key), "{toml}: {text}");
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let flags = ServeOptions {
            max_connections: Some(7),
            ..ServeOptions::default()
        };
        let file = ServeOptions::from_toml("max-connections = 100\nmax-head-size = 4096").unwrap();
        let merged = flags.or(file);
        assert_eq!(merged.max_connections, Some(7));
        assert_eq!(merged.max_head_size, Some(4096));
    }
}
