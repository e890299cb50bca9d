// Command kube-apiextensions-apiserver is the apiextensions-apiserver from Debian's
// golang-k8s-apiextensions-apiserver-dev, started for tfms's tests (see k8s/README.md).
//
// It differs from the package's own main.go in two ways, both needed by the tests:
//   - it sets the OpenAPI v2 config, so the CRD OpenAPI controllers run and CRD schemas are
//     published under /openapi/v2 and /openapi/v3 (kubectl's client-side validation needs them);
//   - --test-allow-all turns authorization off (AlwaysAllow) and makes delegated authentication
//     optional (anonymous), so no authentication/authorization kubeconfig is needed.
//     Never use it outside a throwaway loopback test server.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/component-base/cli"
)

func main() {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	// Only changes what a missing --authentication-kubeconfig means: anonymous, not in-cluster.
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	testAllowAll := false

	cmd := &cobra.Command{
		Use:   "kube-apiextensions-apiserver",
		Short: "apiextensions-apiserver for tfms's tests (CRD OpenAPI published; optional allow-all)",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if testAllowAll {
				o.RecommendedOptions.Authorization = nil // ApplyTo(nil) installs AlwaysAllow
				o.RecommendedOptions.Authentication.SkipInClusterLookup = true
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			config, err := o.Config()
			if err != nil {
				return err
			}
			// The stock Config sets only OpenAPIV3Config; without the v2 config the
			// start-apiextensions-controllers hook never starts the CRD OpenAPI controllers.
			defs := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions)
			config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
				defs, openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
			server, err := config.Complete().New(genericapiserver.NewEmptyDelegate())
			if err != nil {
				return err
			}
			return server.GenericAPIServer.PrepareRun().RunWithContext(c.Context())
		},
	}
	cmd.SetContext(genericapiserver.SetupSignalContext())
	fs := cmd.Flags()
	o.AddFlags(fs)
	fs.BoolVar(&testAllowAll, "test-allow-all", false,
		"TESTS ONLY: authorize every request and accept anonymous ones")
	os.Exit(cli.Run(cmd))
}
