// Package platform is the runtime every Email Scout service shares: JSON
// logging, the NATS connection and JetStream provisioning (from the
// definitions in pkg/events), publishing with de-duplication ids, a consumer
// loop with classified acknowledgement, and the HTTP endpoints /healthz,
// /readyz and /metrics.
//
// Acknowledgement follows the error a handler returns (see Consume):
//
//	nil                       -> Ack
//	Permanent(err), ErrEvent  -> Term (poison: logged and counted, never retried)
//	any other error           -> NakWithDelay, growing with each delivery
package platform
