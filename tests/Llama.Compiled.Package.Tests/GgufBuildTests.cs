using System;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Package.Tests;

/// <summary>
/// [LlamaModel("….gguf")] end to end through MSBuild: a throwaway project that references the runtime by ProjectReference
/// and imports build/Llama.Compiled.targets (the README's line for GGUF users) compiles stories260K from its f32 GGUF
/// (read in place), runs, and generates text with the GGUF's own tokenizer; a second build does not read the GGUF again;
/// a truncated GGUF is one build error naming it.
/// </summary>
[Collection(SlowTests.Name)]
public class GgufBuildTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);

    private static string Stories260KGguf => Path.GetFullPath(Path.Combine(Paths.RepoRoot, "..", "shared", "models", "stories260K", "stories260K-f32.gguf"));

    private const string Program = """
        using Llama.Compiled;

        string gguf = args[0];
        using var model = Stories260K.Load(gguf);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, LlamaTokenizers.Load(gguf));
        var greedy = new GenerationOptions { MaxNewTokens = 48, Sampling = new SamplingOptions { Temperature = 0f } };
        Console.Write("Once upon a time");
        foreach (string chunk in generator.Generate("Once upon a time", greedy))
            Console.Write(chunk);
        Console.WriteLine();
        Console.WriteLine($"layers {Stories260K.LayerCount}, vocabulary {Stories260K.VocabSize}, context {Stories260K.MaxContext}, tied {Stories260K.TiedEmbeddings}");

        [LlamaModel("stories260K/stories260K-f32.gguf")]
        partial class Stories260K;
        """;

    private static void WriteProject(string folder, string gguf) => WriteProject(folder, gguf, Program);

    /// <summary>
    /// A console project with the runtime by ProjectReference, the targets imported, <paramref name="gguf"/> as an
    /// AdditionalFiles item and <paramref name="program"/> as its Program.cs.
    /// </summary>
    internal static void WriteProject(string folder, string gguf, string program)
    {
        string src = Path.Combine(Paths.RepoRoot, "src");
        File.WriteAllText(Path.Combine(folder, "GgufApp.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <ProjectReference Include="{src}/Runtime/Llama.Compiled.Runtime.csproj" />
                <ProjectReference Include="{src}/Attributes/Llama.Compiled.Attributes.csproj" />
                <ProjectReference Include="{src}/Generator/Llama.Compiled.Generator.csproj" OutputItemType="Analyzer" ReferenceOutputAssembly="false" />
                <AdditionalFiles Include="{gguf}" />
              </ItemGroup>
              <Import Project="{src}/Runtime/build/Llama.Compiled.targets" />
            </Project>
            """);
        File.WriteAllText(Path.Combine(folder, "Program.cs"), program);
    }

    [Fact]
    public void AProjectCompilesFromAGgufAndGeneratesWithItsTokenizer()
    {
        string app = Paths.NewTempFolder("gguf");
        try
        {
            WriteProject(app, Stories260KGguf);
            Tool.Result build = Tool.Run(log, "dotnet", $"build -c {Paths.Configuration} --disable-build-servers -v:n", app, Limit);
            Tool.AssertNoWarnings(build);
            // The header was read, and only the header went to the compiler: the GGUF is not an AdditionalFiles item.
            string header = Assert.Single(Directory.GetFiles(Path.Combine(app, "obj"), "stories260K-f32.*.gguf-header.json", SearchOption.AllDirectories));
            Assert.Contains($"\"gguf\": \"{Stories260KGguf}\"", File.ReadAllText(header));
            string csc = build.StdOut.Split('\n').Single(l => l.Contains("/additionalfile:", StringComparison.Ordinal) && l.Contains("csc", StringComparison.Ordinal));
            Assert.Contains("/additionalfile:" + header, csc);
            Assert.DoesNotContain(".gguf ", csc.Replace(".gguf-header.json", "", StringComparison.Ordinal));

            Tool.Result run = Tool.Run(log, "dotnet", $"\"{Path.Combine(app, "bin", Paths.Configuration, "net10.0", "GgufApp.dll")}\" \"{Stories260KGguf}\"", app, Limit);
            string[] lines = run.StdOut.ReplaceLineEndings("\n").Split('\n');
            // run.c's greedy story (the f32 GGUF reproduces its tokens), decoded with the vocabulary in the GGUF.
            Assert.StartsWith("Once upon a time, there was a little girl named Lily.", lines[0]);
            Assert.Equal("layers 5, vocabulary 512, context 512, tied False", lines[1]);

            // Unchanged GGUF: the target that reads it is skipped, and the compiler is not run again.
            Tool.Result again = Tool.Run(log, "dotnet", $"build -c {Paths.Configuration} --disable-build-servers -v:d", app, Limit);
            Assert.Contains("Skipping target \"_LlamaCompiledReadGgufHeaders\" because all output files are up-to-date", again.StdOut);
            Assert.Contains("Skipping target \"CoreCompile\"", again.StdOut);
        }
        finally
        {
            Paths.DeleteQuietly(app);
        }
    }

    [Fact]
    public void ATruncatedGgufIsABuildErrorNamingIt()
    {
        string app = Paths.NewTempFolder("gguf-truncated");
        try
        {
            string gguf = Path.Combine(app, "stories260K", "stories260K-f32.gguf");
            Directory.CreateDirectory(Path.GetDirectoryName(gguf)!);
            using (FileStream source = File.OpenRead(Stories260KGguf))
            {
                byte[] start = new byte[4000]; // inside the tokenizer's token list
                source.ReadExactly(start);
                File.WriteAllBytes(gguf, start);
            }
            WriteProject(app, gguf);
            Tool.Result build = Tool.RunUnchecked(log, "dotnet", $"build -c {Paths.Configuration} --disable-build-servers", app, Limit);
            Assert.NotEqual(0, build.ExitCode);
            string error = build.StdOut.Split('\n').First(l => l.Contains("error LLC1001", StringComparison.Ordinal));
            Assert.Contains(gguf, error);
            Assert.Contains("truncated", error);
            Assert.DoesNotContain("error CS", build.StdOut);
        }
        finally
        {
            Paths.DeleteQuietly(app);
        }
    }
}
