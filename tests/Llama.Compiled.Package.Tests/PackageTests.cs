using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using System.Xml.Linq;
using Microsoft.Extensions.AI;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Package.Tests;

/// <summary>
/// Packs Llama.Compiled into a local folder feed and uses it from a fresh console project, as a new
/// user would: a package reference by version, one attribute, the config as an AdditionalFiles item.
/// </summary>
[Collection(SlowTests.Name)]
public class PackageTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(4);

    /// <summary>The README's usage: the greedy story of the model at args[0].</summary>
    private const string GreedyStory = """
        using Llama.Compiled;
        using Microsoft.Extensions.AI;

        string modelPath = args[0];
        using var model = Stories260K.Load(modelPath);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, LlamaTokenizers.Load(modelPath));
        var greedy = new GenerationOptions { MaxNewTokens = 64, Sampling = new SamplingOptions { Temperature = 0f } };
        Console.Write("Once upon a time");
        foreach (string chunk in generator.Generate("Once upon a time", greedy))
            Console.Write(chunk);
        Console.WriteLine();

        """;

    /// <summary>The consumer's Program.cs: the greedy story, then one chat answer.</summary>
    private const string ConsumerProgram = GreedyStory + """
        IChatClient chat = model.AsChatClient(modelPath, greedy);
        ChatResponse response = await chat.GetResponseAsync("Tell me about a cat.");
        Console.WriteLine(response.Text);

        [LlamaModel("stories260K/hf/config.json")]
        partial class Stories260K;
        """;

    /// <summary>The same greedy story from a project that has only the GGUF file: compiled from its header, its own tokenizer.</summary>
    private const string GgufConsumerProgram = GreedyStory + """
        [LlamaModel("stories260K-f32.gguf")]
        partial class Stories260K;
        """;

    [Fact]
    public async Task AFreshProjectBuildsAndRunsOnThePackage()
    {
        string root = Paths.NewTempFolder("package");
        string version = "0.1.0-test-" + Guid.NewGuid().ToString("N")[..12];
        try
        {
            // Pack, with bin/obj of its own so that nothing in the repository is touched.
            string feed = Path.Combine(root, "feed");
            Tool.Result packed = Tool.Run(log, "dotnet",
                $"pack \"{Path.Combine(Paths.RepoRoot, "src", "Runtime", "Llama.Compiled.Runtime.csproj")}\" -c Release -o \"{feed}\" " +
                $"--artifacts-path \"{Path.Combine(root, "artifacts")}\" -p:Version={version} --disable-build-servers",
                Paths.RepoRoot, Limit);
            Tool.AssertNoWarnings(packed);
            string package = Path.Combine(feed, $"Llama.Compiled.{version}.nupkg");
            CheckPackageLayout(package, version);

            // A new console project that references the package by version from the local feed.
            string App(string name, string additionalFile, string program)
            {
                string app = Path.Combine(root, name);
                Directory.CreateDirectory(app);
                Tool.Run(log, "dotnet", "new console -n Consumer -o . --no-restore", app, Limit);
                File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                    <?xml version="1.0" encoding="utf-8"?>
                    <configuration>
                      <packageSources>
                        <add key="llama-compiled-local" value="{feed}" />
                      </packageSources>
                    </configuration>
                    """);
                Tool.Run(log, "dotnet", $"add package Llama.Compiled --version {version}", app, Limit);
                string project = Path.Combine(app, "Consumer.csproj");
                XDocument csproj = XDocument.Load(project);
                csproj.Root!.Add(new XElement("ItemGroup", new XElement("AdditionalFiles", new XAttribute("Include", additionalFile))));
                csproj.Save(project);
                File.WriteAllText(Path.Combine(app, "Program.cs"), program);

                Tool.Result build = Tool.Run(log, "dotnet", "build -c Release --disable-build-servers", app, Limit);
                // The generator loads in the consumer's compiler without a warning (CS8032 and the like).
                Tool.AssertNoWarnings(build);
                Assert.Contains("0 Warning(s)", build.StdOut);
                return app;
            }

            (string expected, string story) = await ExpectedOutputAsync();
            string app = App("app", Path.Combine(Paths.Stories260KHf, "config.json"), ConsumerProgram);
            Tool.Result run = Tool.Run(log, "dotnet", $"\"{Path.Combine(app, "bin", "Release", "net10.0", "Consumer.dll")}\" \"{Paths.Stories260KHf}\"", app, Limit);
            Assert.Equal(expected, run.StdOut.ReplaceLineEndings("\n"));

            // A user who has only the GGUF: the package's build/ targets read its header, nothing else is needed.
            string gguf = Path.Combine(Paths.Stories260KHf, "..", "stories260K-f32.gguf");
            string ggufApp = App("app-gguf", gguf, GgufConsumerProgram);
            Tool.Result ggufRun = Tool.Run(log, "dotnet", $"\"{Path.Combine(ggufApp, "bin", "Release", "net10.0", "Consumer.dll")}\" \"{gguf}\"", ggufApp, Limit);
            Assert.Equal(story, ggufRun.StdOut.ReplaceLineEndings("\n"));
        }
        finally
        {
            Paths.DeleteQuietly(root);
            // The test version does not stay in the NuGet cache.
            string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            Paths.DeleteQuietly(Path.Combine(packages, "llama.compiled", version));
        }
    }

    /// <summary>
    /// `dotnet pack` at the root makes the one package: every other project in the solution (generator, attributes,
    /// samples, tests) says IsPackable=false. A packable generator alone fails the pack (NU5017: it has neither
    /// dependencies nor content, since its DLL travels in the runtime's package).
    /// </summary>
    [Fact]
    public void OnlyTheRuntimeIsPackable()
    {
        string solution = File.ReadAllText(Path.Combine(Paths.RepoRoot, "Llama.Compiled.sln"));
        string[] projects = System.Text.RegularExpressions.Regex.Matches(solution, "\"([^\"]+\\.csproj)\"")
            .Select(m => m.Groups[1].Value.Replace('\\', '/'))
            .ToArray();
        Assert.Contains("src/Runtime/Llama.Compiled.Runtime.csproj", projects);
        Assert.True(projects.Length >= 10, string.Join(", ", projects));
        foreach (string project in projects)
        {
            Tool.Result result = Tool.Run(log, "dotnet", $"msbuild \"{Path.Combine(Paths.RepoRoot, project)}\" -getProperty:IsPackable -p:Configuration={Paths.Configuration}",
                Paths.RepoRoot, Limit);
            string expected = project == "src/Runtime/Llama.Compiled.Runtime.csproj" ? "true" : "false";
            Assert.True(result.StdOut.Trim() == expected, $"{project}: IsPackable is '{result.StdOut.Trim()}', expected {expected}");
        }
    }

    /// <summary>What the consumer prints (and its greedy story alone), computed here with the same model compiled into this test assembly.</summary>
    private static async Task<(string Output, string Story)> ExpectedOutputAsync()
    {
        string modelPath = Paths.Stories260KHf;
        using var model = Stories260K.Load(modelPath);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, LlamaTokenizers.Load(modelPath));
        var greedy = new GenerationOptions { MaxNewTokens = 64, Sampling = new SamplingOptions { Temperature = 0f } };
        var expected = new StringBuilder("Once upon a time");
        foreach (string chunk in generator.Generate("Once upon a time", greedy))
            expected.Append(chunk);
        expected.Append('\n');
        string story = expected.ToString();
        IChatClient chat = model.AsChatClient(modelPath, greedy);
        ChatResponse response = await chat.GetResponseAsync("Tell me about a cat.");
        expected.Append(response.Text).Append('\n');
        // The same greedy story the Stories sample prints for --prompt "Once upon a time" --temperature 0.
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", expected.ToString());
        return (expected.ToString(), story);
    }

    private static void CheckPackageLayout(string package, string version)
    {
        using ZipArchive zip = ZipFile.OpenRead(package);
        string[] files = zip.Entries.Select(e => e.FullName).ToArray();
        Assert.Contains("analyzers/dotnet/cs/Llama.Compiled.Generator.dll", files);
        Assert.Contains("lib/net10.0/Llama.Compiled.Runtime.dll", files);
        Assert.Contains("lib/net10.0/Llama.Compiled.Attributes.dll", files);
        Assert.Contains("README.md", files);
        Assert.Contains("LICENSE", files);
        // Compiling from a GGUF: NuGet imports build/<PackageId>.targets (and buildTransitive/ for indirect references).
        Assert.Contains("build/Llama.Compiled.targets", files);
        Assert.Contains("buildTransitive/Llama.Compiled.targets", files);

        using Stream stream = zip.GetEntry("Llama.Compiled.nuspec")!.Open();
        XDocument nuspec = XDocument.Load(stream);
        XNamespace ns = nuspec.Root!.Name.Namespace;
        XElement metadata = nuspec.Root.Element(ns + "metadata")!;
        Assert.Equal(version, metadata.Element(ns + "version")!.Value);
        Assert.Equal("MIT", metadata.Element(ns + "license")!.Value);
        Assert.Equal("README.md", metadata.Element(ns + "readme")!.Value);
        // Source Link: the commit the package was built from.
        Assert.Matches("^[0-9a-f]{40}$", metadata.Element(ns + "repository")!.Attribute("commit")!.Value);
        string[] dependencies = metadata.Descendants(ns + "dependency").Select(d => d.Attribute("id")!.Value).Order().ToArray();
        Assert.Equal(["Microsoft.Extensions.AI.Abstractions", "Microsoft.ML.Tokenizers", "System.Numerics.Tensors"], dependencies);
    }
}

/// <summary>stories260K compiled into the test assembly, for the expected outputs.</summary>
[LlamaModel("stories260K/hf/config.json")]
internal partial class Stories260K;

/// <summary>The slow tests build and publish; they run one after the other, not in parallel.</summary>
[CollectionDefinition(Name)]
public sealed class SlowTests
{
    public const string Name = "Builds and publishes";
}
