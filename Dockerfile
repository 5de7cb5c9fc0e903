# relayq as a small static image: `docker build -t relayq .`
# Build stage: a pure-Go static binary (go-ethereum falls back to its Go
# secp256k1 without cgo).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/relayq ./cmd/relayq

# Run stage: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relayq /relayq
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/relayq"]
CMD ["help"]
