using System;
using System.IO;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>Locations of the shared test models and of the files the tests generate.</summary>
internal static class OraclePaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string SharedModels => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "models"));

    public static string Stories260K => Path.Combine(SharedModels, "stories260K");

    /// <summary>
    /// A folder for the random-weight GGUF files of this test run (one per process, <see cref="Llama.Compiled.Tests.ProcessScratch"/>). Generating them takes well under a second per shape, so nothing is cached across runs:
    /// a changed writer is always exercised.
    /// </summary>
    public static string Scratch { get; } = CreateScratch();

    private static string CreateScratch()
    {
        string dir = Llama.Compiled.Tests.ProcessScratch.Claim(Path.Combine(Path.GetTempPath(), "llama-compiled-oracle"), "");
        Directory.CreateDirectory(dir);
        return dir;
    }

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
