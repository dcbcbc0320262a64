module github.com/emailscout/emailscout/services/notifier

go 1.26

require (
	github.com/emailscout/emailscout/pkg v0.0.0
	github.com/emailscout/emailscout/internal v0.0.0
)

replace (
	github.com/emailscout/emailscout/pkg => ../../pkg
	github.com/emailscout/emailscout/internal => ../../internal
)
