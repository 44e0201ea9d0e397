// Package oracle holds the differential tests of package rules against
// k8s.io/apiserver's own audit policy evaluator. It is a module of its own
// so that the apiserver's large module graph stays out of the shipper's.
package oracle
