using Xunit;
using Xunit.Abstractions;
using Llama.Compiled.LlamaCpp;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>The oracle itself: llama.cpp must load here, or every oracle test fails saying why.</summary>
public sealed class NativeLibraryTests(ITestOutputHelper output)
{
    [Fact]
    public void LlamaCppNativeLibraryLoads()
    {
        // Throws LlamaCppUnavailableException with llama.cpp's load log if the backend cannot load: a failure, never a skip.
        LlamaCppOracle.EnsureNativeLibrary();
        using var llama = new LlamaCppOracle(System.IO.Path.Combine(OraclePaths.Stories260K, "stories260K-f32.gguf"));
        output.WriteLine($"libllama: {LlamaCppOracle.NativeLibraryPath}");
        Assert.Equal(512, llama.VocabSize);
        Assert.Equal(512, llama.ContextSize);
    }
}
