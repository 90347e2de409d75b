using System;
using System.IO;

namespace Llama.Compiled.Tests;

/// <summary>Locations of the shared test models (../shared/models from the repository root).</summary>
internal static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string SharedModels => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "models"));

    public static string Stories260K => Path.Combine(SharedModels, "stories260K");

    public static string Stories260KHf => Path.Combine(Stories260K, "hf");

    /// <summary>Real byte-level BPE tokenizers (llama3/, qwen3/) with Hugging Face's tokenizations of corpus.json.</summary>
    public static string Tokenizers => Path.Combine(SharedModels, "tokenizers");

    private static string FindRepoRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
                return dir;
        }
        throw new InvalidOperationException("Llama.Compiled.sln not found above " + AppContext.BaseDirectory);
    }
}
