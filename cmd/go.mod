module github.com/emailscout/emailscout/cmd

go 1.26.0

require (
	github.com/cenkalti/backoff/v5 v5.0.3
	github.com/emailscout/emailscout/pkg v0.0.0
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/emersion/go-message v0.18.2
	github.com/emersion/go-smtp v0.26.0
	github.com/jonboulle/clockwork v0.5.0
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	golang.org/x/text v0.14.0 // indirect
)

replace (
	github.com/emailscout/emailscout/internal => ../internal
	github.com/emailscout/emailscout/pkg => ../pkg
	github.com/emailscout/emailscout/services/evaluator => ../services/evaluator
	github.com/emailscout/emailscout/services/notifier => ../services/notifier
	github.com/emailscout/emailscout/services/receiver => ../services/receiver
	github.com/emailscout/emailscout/services/scheduler => ../services/scheduler
	github.com/emailscout/emailscout/services/sender => ../services/sender
)
