module github.com/emailscout/emailscout/cmd

go 1.26.0

require (
	github.com/emailscout/emailscout/pkg v0.0.0
	github.com/spf13/cobra v1.10.2
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
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
