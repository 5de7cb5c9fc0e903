module github.com/relayq/relayq

go 1.26.8
