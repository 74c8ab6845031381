module github.com/propolis-mqtt/propolis/sdk/go

go 1.24
