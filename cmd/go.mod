module github.com/emailscout/emailscout/cmd

go 1.26

require (
	github.com/emailscout/emailscout/pkg v0.0.0
	github.com/emailscout/emailscout/internal v0.0.0
	github.com/emailscout/emailscout/services/scheduler v0.0.0
	github.com/emailscout/emailscout/services/sender v0.0.0
	github.com/emailscout/emailscout/services/receiver v0.0.0
	github.com/emailscout/emailscout/services/evaluator v0.0.0
	github.com/emailscout/emailscout/services/notifier v0.0.0
)

replace (
	github.com/emailscout/emailscout/pkg => ../pkg
	github.com/emailscout/emailscout/internal => ../internal
	github.com/emailscout/emailscout/services/scheduler => ../services/scheduler
	github.com/emailscout/emailscout/services/sender => ../services/sender
	github.com/emailscout/emailscout/services/receiver => ../services/receiver
	github.com/emailscout/emailscout/services/evaluator => ../services/evaluator
	github.com/emailscout/emailscout/services/notifier => ../services/notifier
)
