module github.com/propolis-mqtt/propolis/shipped

go 1.26.8

require (
	github.com/propolis-mqtt/propolis v0.0.0
	github.com/propolis-mqtt/propolis/sdk/go v0.0.0
)

replace (
	github.com/propolis-mqtt/propolis => ../
	github.com/propolis-mqtt/propolis/sdk/go => ../sdk/go
)
