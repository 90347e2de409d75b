using System;
using System.IO;
using System.Runtime.CompilerServices;

namespace Llama.Compiled.Tests;

/// <summary>
/// Points the weight cache of every mapped load in a test process at a folder of its own, deleted when the process exits:
/// tests must not write cache files beside the shared models in ../shared, nor leave any behind. Compiled into each test
/// project that loads models (see their .csproj).
/// </summary>
internal static class WeightCacheIsolation
{
    /// <summary>The runtime's <c>WeightCache.DirectoryVariable</c> (not every test project sees the runtime's internals).</summary>
    private const string CacheDirectoryVariable = "LLAMA_COMPILED_CACHE_DIR";

#pragma warning disable CA2255 // a module initializer in a test assembly: it must run before any test loads a model
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void UseATemporaryCacheFolder()
    {
        // A child process of a test inherits its parent's folder, which the parent deletes.
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(CacheDirectoryVariable)))
            return;
        Environment.SetEnvironmentVariable(CacheDirectoryVariable, ProcessScratch.Claim(Path.GetTempPath(), "llama-compiled-test-cache-"));
    }
}
