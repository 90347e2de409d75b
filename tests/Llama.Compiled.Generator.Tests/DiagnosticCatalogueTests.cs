using System;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// One test (at least) per diagnostic id: the id, severity Error, where it points (the config line and
/// column for config problems, the attribute argument or class name for source problems), and that
/// the message names the offending key. docs/diagnostics.md documents the same catalogue.
/// </summary>
public sealed class DiagnosticCatalogueTests
{
    private const string ConfigPath = "/project/models/config.json";
    private const string DefaultArguments = "\"models/config.json\"";

    // ---------------------------------------------------------------- helpers

    private static GeneratorRun RunConfig(string config, string arguments = DefaultArguments, string declaration = "public partial class TestModel;") =>
        GeneratorHarness.Run(GeneratorHarness.ModelSource(arguments, declaration), (ConfigPath, config));

    private static GeneratorRun RunConfig(ConfigBuilder config, string arguments = DefaultArguments) => RunConfig(config.ToString(), arguments);

    /// <summary>The run reported exactly one diagnostic, <paramref name="id"/>, an error, and generated nothing.</summary>
    private static Diagnostic Single(GeneratorRun run, string id)
    {
        Assert.True(run.GeneratorDiagnostics.Length == 1,
            $"expected one {id}, got: {string.Join(Environment.NewLine, run.GeneratorDiagnostics)}");
        Diagnostic diagnostic = run.GeneratorDiagnostics[0];
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Equal("docs/diagnostics.md#" + id.ToLowerInvariant(), diagnostic.Descriptor.HelpLinkUri);
        Assert.Empty(run.Sources);
        return diagnostic;
    }

    /// <summary>No diagnostics and two generated files that compile without warnings.</summary>
    private static void Clean(GeneratorRun run)
    {
        Assert.True(run.GeneratorDiagnostics.IsEmpty, string.Join(Environment.NewLine, run.GeneratorDiagnostics));
        Assert.Equal(2, run.Sources.Length);
        Assert.True(run.CompilationDiagnostics.IsEmpty, string.Join(Environment.NewLine, run.CompilationDiagnostics.Take(10)));
    }

    /// <summary>The diagnostic starts at the key <paramref name="key"/> of the config (its opening quote).</summary>
    private static void AssertAtKey(Diagnostic d, ConfigBuilder config, string key)
    {
        FileLinePositionSpan span = d.Location.GetLineSpan();
        Assert.Equal(ConfigPath, span.Path);
        Assert.Equal(config.LineOf(key), span.StartLinePosition.Line);
        Assert.Equal(ConfigBuilder.KeyColumn, span.StartLinePosition.Character);
    }

    /// <summary>The diagnostic starts at the value of <paramref name="key"/> (after <c>"key": </c>).</summary>
    private static void AssertAtValue(Diagnostic d, ConfigBuilder config, string key)
    {
        FileLinePositionSpan span = d.Location.GetLineSpan();
        Assert.Equal(ConfigPath, span.Path);
        Assert.Equal(config.LineOf(key), span.StartLinePosition.Line);
        Assert.Equal(ConfigBuilder.KeyColumn + key.Length + 4, span.StartLinePosition.Character);
    }

    /// <summary>The diagnostic's span in the user source is exactly <paramref name="text"/>.</summary>
    private static void AssertAtSource(Diagnostic d, string source, string text)
    {
        Assert.Equal(GeneratorHarness.SourcePath, d.Location.GetLineSpan().Path);
        Assert.Equal(text, source.Substring(d.Location.SourceSpan.Start, d.Location.SourceSpan.Length));
        int expectedStart = source.IndexOf(text, StringComparison.Ordinal);
        Assert.True(expectedStart >= 0);
    }

    // ---------------------------------------------------------------- LLC0001 config not among AdditionalFiles

    [Fact]
    public void LLC0001_ConfigNotAmongAdditionalFiles()
    {
        string source = GeneratorHarness.ModelSource();
        GeneratorRun run = GeneratorHarness.Run(source, ("/project/other/config.json", ConfigBuilder.Tiny().ToString()));
        Diagnostic d = Single(run, "LLC0001");
        Assert.Contains("<AdditionalFiles Include=\"models/config.json\" />", d.GetMessage());
        AssertAtSource(d, source, "\"models/config.json\"");
    }

    [Fact]
    public void LLC0001_NoAdditionalFilesAtAll()
    {
        string source = GeneratorHarness.ModelSource();
        Diagnostic d = Single(GeneratorHarness.Run(source), "LLC0001");
        Assert.Contains("<AdditionalFiles Include=\"models/config.json\" />", d.GetMessage());
        AssertAtSource(d, source, "\"models/config.json\"");
    }

    [Fact]
    public void LLC0001_NonJsonAdditionalFilesAreNotConfigs()
    {
        string source = GeneratorHarness.ModelSource("\"models/config.txt\"");
        GeneratorRun run = GeneratorHarness.Run(source, ("/project/models/config.txt", ConfigBuilder.Tiny().ToString()));
        Diagnostic d = Single(run, "LLC0001");
        Assert.Contains("<AdditionalFiles Include=\"models/config.txt\" />", d.GetMessage());
    }

    // ---------------------------------------------------------------- LLC0002 invalid JSON

    [Theory]
    [InlineData("{\n  \"hidden_size\": 64,\n  \"vocab_size\": ]\n}", 2, 16)]
    [InlineData("{\n  \"hidden_size\": 64,\n}", 2, 0)]
    [InlineData("{\n  \"hidden_size\": 64\n  \"vocab_size\": 512\n}", 2, 2)]
    [InlineData("{\n  'hidden_size': 64\n}", 1, 2)]
    [InlineData("{\n  \"hidden_size\": 0x40\n}", 1, 18)]
    public void LLC0002_InvalidJsonPointsAtLineAndColumn(string config, int line, int column)
    {
        Diagnostic d = Single(RunConfig(config), "LLC0002");
        FileLinePositionSpan span = d.Location.GetLineSpan();
        Assert.Equal(ConfigPath, span.Path);
        Assert.Equal(line, span.StartLinePosition.Line);
        Assert.Equal(column, span.StartLinePosition.Character);
        Assert.Contains($"line {line + 1}, column {column + 1}", d.GetMessage());
    }

    [Theory]
    [InlineData("")]
    [InlineData("{\n  \"hidden_size\": 64,\n  \"vocab_size\": 5")]
    [InlineData("{\"a\": \"unterminated}")]
    public void LLC0002_TruncatedDocument(string config)
    {
        Diagnostic d = Single(RunConfig(config), "LLC0002");
        Assert.Equal(ConfigPath, d.Location.GetLineSpan().Path);
        Assert.Contains(ConfigPath, d.GetMessage());
    }

    [Theory]
    [InlineData("[1, 2]")]
    [InlineData("\"config\"")]
    [InlineData("null")]
    public void LLC0002_DocumentMustBeAnObject(string config)
    {
        Diagnostic d = Single(RunConfig(config), "LLC0002");
        Assert.Contains("object", d.GetMessage());
        Assert.Equal(0, d.Location.GetLineSpan().StartLinePosition.Line);
    }

    // ---------------------------------------------------------------- LLC0003 missing required key

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("intermediate_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("num_attention_heads")]
    [InlineData("vocab_size")]
    public void LLC0003_MissingRequiredKey(string key)
    {
        Diagnostic d = Single(RunConfig(ConfigBuilder.Tiny().Without(key)), "LLC0003");
        Assert.Contains("'" + key + "'", d.GetMessage());
        FileLinePositionSpan span = d.Location.GetLineSpan();
        Assert.Equal(ConfigPath, span.Path);
        Assert.Equal(0, span.StartLinePosition.Line); // the object's opening brace: the key belongs in it
        Assert.Equal(0, span.StartLinePosition.Character);
    }

    [Theory]
    [InlineData("factor")]
    [InlineData("low_freq_factor")]
    [InlineData("high_freq_factor")]
    [InlineData("original_max_position_embeddings")]
    public void LLC0003_MissingLlama3RopeScalingParameter(string key)
    {
        string[] parts =
        [
            "\"rope_type\": \"llama3\"", "\"factor\": 32.0", "\"low_freq_factor\": 1.0",
            "\"high_freq_factor\": 4.0", "\"original_max_position_embeddings\": 64",
        ];
        string scaling = "{" + string.Join(", ", parts.Where(p => !p.StartsWith("\"" + key + "\"", StringComparison.Ordinal))) + "}";
        ConfigBuilder config = ConfigBuilder.Tiny().With("rope_scaling", scaling);
        Diagnostic d = Single(RunConfig(config), "LLC0003");
        Assert.Contains(key, d.GetMessage());
        Assert.Contains("rope_scaling", d.GetMessage());
        AssertAtKey(d, config, "rope_scaling");
    }

    // ---------------------------------------------------------------- LLC0004 wrong type

    [Theory]
    [InlineData("hidden_size", "\"64\"", "an integer")]
    [InlineData("num_hidden_layers", "2.5", "an integer")]
    [InlineData("vocab_size", "99999999999999999999", "an integer")]
    [InlineData("max_position_embeddings", "[512]", "an integer")]
    [InlineData("tie_word_embeddings", "\"yes\"", "true or false")]
    [InlineData("model_type", "3", "a string")]
    [InlineData("rms_norm_eps", "\"small\"", "a number")]
    [InlineData("rope_theta", "1e400", "a number")]
    [InlineData("eos_token_id", "[2, \"x\"]", "token id")]
    [InlineData("rope_scaling", "[1, 2]", "object")]
    public void LLC0004_WrongTypePointsAtTheValue(string key, string value, string expected)
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With(key, value);
        Diagnostic d = Single(RunConfig(config), "LLC0004");
        Assert.Contains("'" + key + "'", d.GetMessage());
        Assert.Contains(expected, d.GetMessage());
        AssertAtValue(d, config, key);
    }

    // ---------------------------------------------------------------- LLC0005 invalid value

    [Theory]
    [InlineData("hidden_size", "0", "hidden_size")]
    [InlineData("hidden_size", "-64", "hidden_size")]
    [InlineData("intermediate_size", "0", "intermediate_size")]
    [InlineData("num_hidden_layers", "-1", "num_hidden_layers")]
    [InlineData("num_attention_heads", "0", "num_attention_heads")]
    [InlineData("num_key_value_heads", "-4", "num_key_value_heads")]
    [InlineData("vocab_size", "0", "vocab_size")]
    [InlineData("max_position_embeddings", "0", "max_position_embeddings")]
    [InlineData("num_key_value_heads", "3", "num_key_value_heads")]   // 8 heads are not a multiple of 3 KV heads
    [InlineData("head_dim", "7", "head_dim")]                         // RoPE rotates pairs
    [InlineData("head_dim", "0", "head_dim")]
    [InlineData("rms_norm_eps", "0", "rms_norm_eps")]
    [InlineData("rms_norm_eps", "-1e-5", "rms_norm_eps")]
    [InlineData("rope_theta", "1", "rope_theta")]
    [InlineData("eos_token_id", "512", "eos_token_id")]                // not below vocab_size
    [InlineData("bos_token_id", "-1", "bos_token_id")]
    public void LLC0005_InvalidValue(string key, string value, string reportedKey)
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With(key, value);
        Diagnostic d = Single(RunConfig(config), "LLC0005");
        Assert.Contains("'" + reportedKey + "'", d.GetMessage());
        AssertAtKey(d, config, reportedKey);
    }

    [Fact]
    public void LLC0005_OutOfRangeTokenListIsReportedOnce()
    {
        // One bad key is one diagnostic, not one per element of the list.
        ConfigBuilder config = ConfigBuilder.Tiny().With("eos_token_id", "[" + string.Join(", ", Enumerable.Range(1000, 1000)) + "]");
        Diagnostic d = Single(RunConfig(config), "LLC0005");
        Assert.Contains("'eos_token_id'", d.GetMessage());
        AssertAtKey(d, config, "eos_token_id");
    }

    [Fact]
    public void LLC0005_HiddenSizeNotDivisibleByHeadsWithoutHeadDim()
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With("hidden_size", "100");
        Diagnostic d = Single(RunConfig(config), "LLC0005");
        Assert.Contains("hidden_size", d.GetMessage());
        Assert.Contains("num_attention_heads", d.GetMessage());
        Assert.Contains("head_dim", d.GetMessage());
        AssertAtKey(d, config, "hidden_size");
    }

    [Fact]
    public void LLC0005_HiddenSizeNotDivisibleByHeadsIsFineWithHeadDim()
    {
        // Explicit head_dim decouples the head width from hidden_size (Llama 3.2, Qwen3-style configs).
        Clean(RunConfig(ConfigBuilder.Tiny().With("hidden_size", "100").With("head_dim", "16")));
    }

    [Fact]
    public void LLC0005_OddDerivedHeadDimIsReportedAtHiddenSize()
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With("hidden_size", "72"); // 72 / 8 heads = 9
        Diagnostic d = Single(RunConfig(config), "LLC0005");
        Assert.Contains("'hidden_size'", d.GetMessage());
        Assert.Contains("odd", d.GetMessage());
        AssertAtKey(d, config, "hidden_size");
    }

    [Fact]
    public void LLC0005_NonPositiveRopeScalingFactor()
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With("rope_scaling",
            "{\"rope_type\": \"llama3\", \"factor\": -2.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}");
        Diagnostic d = Single(RunConfig(config), "LLC0005");
        Assert.Contains("factor", d.GetMessage());
        Assert.Equal(config.LineOf("rope_scaling"), d.Location.GetLineSpan().StartLinePosition.Line);
    }

    // ---------------------------------------------------------------- LLC0006 unsupported

    [Theory]
    [InlineData("model_type", "\"gpt2\"", "gpt2")]
    [InlineData("model_type", "\"mamba\"", "mamba")]
    [InlineData("hidden_act", "\"gelu\"", "gelu")]
    [InlineData("hidden_act", "\"relu\"", "relu")]
    public void LLC0006_UnsupportedFeature(string key, string value, string named)
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With(key, value);
        Diagnostic d = Single(RunConfig(config), "LLC0006");
        Assert.Contains("'" + key + "'", d.GetMessage());
        Assert.Contains(named, d.GetMessage());
        AssertAtKey(d, config, key);
    }

    [Theory]
    [InlineData("{\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32768}", "yarn")]
    [InlineData("{\"type\": \"yarn\", \"factor\": 4.0}", "yarn")]
    [InlineData("{\"type\": \"dynamic\", \"factor\": 2.0}", "dynamic")]
    [InlineData("{\"rope_type\": \"longrope\", \"factor\": 2.0}", "longrope")]
    [InlineData("{\"factor\": 2.0}", "rope_type")]
    public void LLC0006_UnsupportedRopeScaling(string scaling, string named)
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With("rope_scaling", scaling);
        Diagnostic d = Single(RunConfig(config), "LLC0006");
        Assert.Contains("'rope_scaling'", d.GetMessage());
        Assert.Contains(named, d.GetMessage());
        FileLinePositionSpan span = d.Location.GetLineSpan();
        Assert.Equal(ConfigPath, span.Path);
        Assert.Equal(config.LineOf("rope_scaling"), span.StartLinePosition.Line);
    }

    [Fact]
    public void LLC0006_TensorTooLargeFor32BitIndices()
    {
        ConfigBuilder config = ConfigBuilder.Tiny().With("vocab_size", "2000000000").With("hidden_size", "64");
        Diagnostic d = Single(RunConfig(config), "LLC0006");
        Assert.Contains("'vocab_size'", d.GetMessage());
        AssertAtKey(d, config, "vocab_size");
    }

    // ---------------------------------------------------------------- LLC0007 not partial

    [Fact]
    public void LLC0007_ClassNotPartial()
    {
        string source = GeneratorHarness.ModelSource(declaration: "public class TestModel { }");
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0007");
        Assert.Contains("TestModel", d.GetMessage());
        Assert.Contains("partial", d.GetMessage());
        AssertAtSource(d, source, "TestModel");
    }

    [Fact]
    public void LLC0007_ContainingTypeNotPartial()
    {
        const string source = """
            using Llama.Compiled;

            namespace UserApp;

            public class Outer
            {
                [LlamaModel("models/config.json")]
                public partial class Inner;
            }
            """;
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0007");
        Assert.Contains("Inner", d.GetMessage());
        AssertAtSource(d, source, "Inner");
    }

    // ---------------------------------------------------------------- LLC0008 generic

    [Fact]
    public void LLC0008_GenericClass()
    {
        string source = GeneratorHarness.ModelSource(declaration: "public partial class TestModel<T>;");
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0008");
        Assert.Contains("TestModel", d.GetMessage());
        Assert.Contains("generic", d.GetMessage());
        AssertAtSource(d, source, "TestModel");
    }

    [Fact]
    public void LLC0008_NestedInGenericClass()
    {
        const string source = """
            using Llama.Compiled;

            namespace UserApp;

            public partial class Outer<T>
            {
                [LlamaModel("models/config.json")]
                public partial class Inner;
            }
            """;
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0008");
        Assert.Contains("Inner", d.GetMessage());
        AssertAtSource(d, source, "Inner");
    }

    // ---------------------------------------------------------------- LLC0009 ambiguous path

    [Fact]
    public void LLC0009_AmbiguousConfigPath()
    {
        string source = GeneratorHarness.ModelSource("\"config.json\"");
        string config = ConfigBuilder.Tiny().ToString();
        GeneratorRun run = GeneratorHarness.Run(source, ("/project/a/config.json", config), ("/project/b/config.json", config));
        Diagnostic d = Single(run, "LLC0009");
        Assert.Contains("/project/a/config.json", d.GetMessage());
        Assert.Contains("/project/b/config.json", d.GetMessage());
        AssertAtSource(d, source, "\"config.json\"");
    }

    [Fact]
    public void LLC0009_LongerPathResolvesTheAmbiguity()
    {
        string config = ConfigBuilder.Tiny().ToString();
        Clean(GeneratorHarness.Run(GeneratorHarness.ModelSource("\"b/config.json\""), ("/project/a/config.json", config), ("/project/b/config.json", config)));
    }

    // ---------------------------------------------------------------- LLC0010 invalid attribute argument

    [Theory]
    [InlineData("MaxContext = -1")]
    [InlineData("MaxContext = -100000")]
    [InlineData("MaxContext = 513")] // above max_position_embeddings (512)
    [InlineData("MaxContext = int.MaxValue")]
    public void LLC0010_MaxContextOutOfRange(string argument)
    {
        string source = GeneratorHarness.ModelSource(DefaultArguments + ", " + argument);
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0010");
        Assert.Contains("MaxContext", d.GetMessage());
        AssertAtSource(d, source, argument);
    }

    [Fact]
    public void LLC0010_MaxContextAtTheLimitIsFine()
    {
        Clean(RunConfig(ConfigBuilder.Tiny(), DefaultArguments + ", MaxContext = 512"));
    }

    [Theory]
    [InlineData("\"\"")]
    [InlineData("\"   \"")]
    public void LLC0010_EmptyConfigPath(string argument)
    {
        string source = GeneratorHarness.ModelSource(argument);
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0010");
        Assert.Contains("configPath", d.GetMessage());
        AssertAtSource(d, source, argument);
    }

    [Fact]
    public void LLC0010_UndefinedWeightFormat()
    {
        string source = GeneratorHarness.ModelSource(DefaultArguments + ", Weights = (WeightFormat)17");
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0010");
        Assert.Contains("Weights", d.GetMessage());
        Assert.Equal(GeneratorHarness.SourcePath, d.Location.GetLineSpan().Path);
    }

    // ---------------------------------------------------------------- LLC0011 static / abstract

    [Theory]
    [InlineData("public static partial class TestModel { }", "static")]
    [InlineData("public abstract partial class TestModel;", "abstract")]
    public void LLC0011_StaticOrAbstractClass(string declaration, string kind)
    {
        string source = GeneratorHarness.ModelSource(declaration: declaration);
        Diagnostic d = Single(GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString())), "LLC0011");
        Assert.Contains("TestModel", d.GetMessage());
        Assert.Contains(kind, d.GetMessage());
        AssertAtSource(d, source, "TestModel");
    }

    // ---------------------------------------------------------------- LLC0012 sliding window

    private static ConfigBuilder Mistral(int window) =>
        ConfigBuilder.Tiny().With("model_type", "\"mistral\"").With("tie_word_embeddings", "false").With("sliding_window", window.ToString());

    [Fact]
    public void LLC0012_SlidingWindowSmallerThanTheContext()
    {
        ConfigBuilder config = Mistral(256); // context 512
        Diagnostic d = Single(RunConfig(config), "LLC0012");
        Assert.Contains("sliding_window", d.GetMessage());
        Assert.Contains("256", d.GetMessage());
        Assert.Contains("512", d.GetMessage());
        Assert.Contains("MaxContext", d.GetMessage());
        AssertAtKey(d, config, "sliding_window");
    }

    [Fact]
    public void LLC0012_RealMistralNeedsMaxContext()
    {
        Diagnostic d = Single(RunConfig(GeneratorHarness.Config("Mistral-7B-v0.1.json")), "LLC0012");
        Assert.Contains("4096", d.GetMessage());
        Assert.Contains("32768", d.GetMessage());
    }

    [Theory]
    [InlineData(512, "")]                    // the window covers the whole context
    [InlineData(4096, "")]
    [InlineData(256, ", MaxContext = 256")]  // capped to the window
    [InlineData(256, ", MaxContext = 100")]
    public void LLC0012_WindowCoveringTheContextIsFine(int window, string maxContext)
    {
        Clean(RunConfig(Mistral(window), DefaultArguments + maxContext));
    }

    [Fact]
    public void LLC0012_Qwen2WindowIsIgnoredUnlessEnabled()
    {
        ConfigBuilder qwen = ConfigBuilder.Tiny().With("model_type", "\"qwen2\"").With("sliding_window", "256").With("use_sliding_window", "false");
        Clean(RunConfig(qwen));
        ConfigBuilder enabled = qwen.With("use_sliding_window", "true");
        Diagnostic d = Single(RunConfig(enabled), "LLC0012");
        AssertAtKey(d, enabled, "sliding_window");
    }

    // ---------------------------------------------------------------- LLC0013 two attributes

    [Theory]
    [InlineData("[LlamaModel(\"models/config.json\")]\n[LlamaModel(\"models/config.json\", MaxContext = 128)]")]
    [InlineData("[LlamaModel(\"models/config.json\"), LlamaModel(\"models/config.json\")]")]
    public void LLC0013_TwoAttributesOnOneClass(string attributes)
    {
        string source = $$"""
            using Llama.Compiled;

            namespace UserApp;

            {{attributes}}
            public partial class TestModel;
            """;
        GeneratorRun run = GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString()));
        Diagnostic d = Single(run, "LLC0013");
        Assert.Contains("TestModel", d.GetMessage());
        Assert.Contains("[LlamaModel]", d.GetMessage());
        AssertAtSource(d, source, "TestModel");
    }

    [Fact]
    public void LLC0013_AttributesOnTwoPartsOfOneClass()
    {
        // Each partial declaration carries one attribute: the generator sees two targets for one class
        // and must report it instead of adding the same hint name twice (which would crash the generator).
        const string source = """
            using Llama.Compiled;

            namespace UserApp;

            [LlamaModel("models/config.json")]
            public partial class TestModel;

            [LlamaModel("models/config.json", MaxContext = 128)]
            public partial class TestModel;
            """;
        GeneratorRun run = GeneratorHarness.Run(source, (ConfigPath, ConfigBuilder.Tiny().ToString()));
        Assert.NotEmpty(run.GeneratorDiagnostics);
        Assert.All(run.GeneratorDiagnostics, d => Assert.Equal("LLC0013", d.Id));
        Assert.Empty(run.Sources);
    }

    // ---------------------------------------------------------------- defaults as transformers reads them

    [Fact]
    public void OptionalKeysTakeTransformersDefaults()
    {
        // LlamaConfig: num_key_value_heads None means multi-head attention; rope_scaling null; no head_dim.
        ConfigBuilder config = ConfigBuilder.Tiny()
            .Without("num_key_value_heads").Without("hidden_act").Without("max_position_embeddings").Without("rms_norm_eps")
            .Without("rope_theta").Without("tie_word_embeddings").Without("bos_token_id").Without("eos_token_id").Without("model_type")
            .With("rope_scaling", "null").With("head_dim", "null").With("attention_bias", "false");
        Clean(RunConfig(config));
    }

    [Fact]
    public void NullNumKeyValueHeadsMeansMultiHeadAttention()
    {
        // transformers: "if num_key_value_heads is None: num_key_value_heads = num_attention_heads".
        GeneratorRun run = RunConfig(ConfigBuilder.Tiny().With("num_key_value_heads", "null"));
        Clean(run);
        var type = run.OutputCompilation.GetTypeByMetadataName("UserApp.TestModel")!;
        Assert.Equal(8, type.GetMembers("KvHeadCount").OfType<IFieldSymbol>().Single().ConstantValue);
    }

    // ---------------------------------------------------------------- GGUF headers (build/Llama.Compiled.targets)

    private const string GgufArguments = "\"models/model.gguf\"";

    private static GeneratorRun RunGguf(GgufHeaderBuilder header) =>
        GeneratorHarness.Run(GeneratorHarness.ModelSource(GgufArguments), header.Item());

    /// <summary>A GGUF problem is reported at the attribute's path (the header file is build output) and names the GGUF.</summary>
    private static Diagnostic SingleGguf(GeneratorRun run, string id, params string[] named)
    {
        Diagnostic d = Single(run, id);
        AssertAtSource(d, GeneratorHarness.ModelSource(GgufArguments), GgufArguments);
        Assert.Contains(GgufHeaderBuilder.GgufPath, d.GetMessage());
        foreach (string text in named)
            Assert.Contains(text, d.GetMessage());
        return d;
    }

    [Theory]
    [InlineData("llama.block_count")]
    [InlineData("llama.embedding_length")]
    [InlineData("llama.attention.layer_norm_rms_epsilon")]
    [InlineData("general.architecture")]
    public void LLC0003_GgufLacksAKey(string key) =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().Without(key)), "LLC0003", "'" + key + "'");

    [Fact]
    public void LLC0003_GgufWithoutVocabularySize() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().Without("tokenizer.ggml.tokens")), "LLC0003", "llama.vocab_size", "tokenizer.ggml.tokens");

    [Theory]
    [InlineData("llama.block_count", "\"five\"", "the string \"five\"")]
    [InlineData("llama.attention.head_count_kv", "{ \"array\": \"int32\", \"length\": 5 }", "an array of int32")]
    [InlineData("llama.attention.layer_norm_rms_epsilon", "\"NaN\"", "the string \"NaN\"")]
    [InlineData("llama.block_count", "5000000000", "the number 5000000000")]
    public void LLC0004_GgufValueOfTheWrongType(string key, string value, string actual) =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().With(key, value)), "LLC0004", "'" + key + "'", actual);

    [Theory]
    [InlineData("llama.attention.head_count_kv", "3")]
    [InlineData("llama.attention.layer_norm_rms_epsilon", "0")]
    [InlineData("tokenizer.ggml.eos_token_id", "512")]
    [InlineData("llama.block_count", "0")]
    public void LLC0005_GgufValueOutOfRange(string key, string value) =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().With(key, value)), "LLC0005", "'" + key + "'");

    [Theory]
    [InlineData("general.architecture", "\"gpt2\"", "gpt2")]
    [InlineData("llama.rope.scaling.type", "\"yarn\"", "yarn")]
    [InlineData("llama.rope.dimension_count", "4", "partial rotary")]
    public void LLC0006_GgufFeatureNotSupported(string key, string value, string named) =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().With(key, value)), "LLC0006", named);

    [Theory]
    [InlineData("0", "factor 3 is 0")]
    [InlineData("-2", "factor 3 is -2")]
    [InlineData("\"NaN\"", "factor 3 is NaN")]
    [InlineData("\"Infinity\"", "factor 3 is Infinity")]
    [InlineData("1e39", "factor 3 is 1e39")]
    public void LLC0005_RopeFrequencyFactorNotFiniteAndPositive(string raw, string named) =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().WithRopeFrequencyFactors("1", "2", "4", raw)), "LLC0005", "'rope_freqs.weight'", named, "finite and positive");

    [Fact]
    public void LLC0006_RopeFrequencyFactorsNotF32() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().WithRopeFrequencyFactors(1f, 2f, 4f, 8f).WithTensor("rope_freqs.weight", 1, 4)), "LLC0006", "rope_freqs.weight", "F16", "F32");

    [Fact]
    public void LLC0016_RopeFrequencyFactorsOfAnotherHeadWidth() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().WithRopeFrequencyFactors(1f, 2f, 4f, 8f, 16f, 32f)), "LLC0016", "rope_freqs.weight", "[6]", "[4]");

    [Fact]
    public void LLC0014_RopeFrequencyFactorValuesNotInTheHeader() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().WithRopeFrequencyFactors(1f, 2f, 4f, 8f).WithoutRopeFrequencyFactorValues()), "LLC0014", "rope_freqs.weight", "rebuild");

    [Fact]
    public void LLC0014_GgufItemWithoutTheTargets()
    {
        // The .gguf itself reached the compiler: its text is never read (the generator gets a throwing text here).
        string source = GeneratorHarness.ModelSource(GgufArguments);
        GeneratorRun run = GeneratorHarness.Run(source, (GgufHeaderBuilder.GgufPath, "GGUF\0\0\0binary"));
        Diagnostic d = Single(run, "LLC0014");
        AssertAtSource(d, source, GgufArguments);
        Assert.Contains("build/Llama.Compiled.targets", d.GetMessage());
        Assert.Contains("<Import Project=", d.GetMessage());
    }

    [Fact]
    public void LLC0014_HeaderOfAnotherFormat()
    {
        string header = GgufHeaderBuilder.Stories260K().ToString().Replace("\"tensors\"", "\"tensor_list\"", StringComparison.Ordinal);
        SingleGguf(GeneratorHarness.Run(GeneratorHarness.ModelSource(GgufArguments), (GgufHeaderBuilder.HeaderPath, header)), "LLC0014", "rebuild");
    }

    [Theory]
    [InlineData(16, "IQ2_XXS")]
    [InlineData(10, "Q2_K")]
    [InlineData(99, "#99")]
    public void LLC0015_TensorTypeWithoutKernels(int type, string name) =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().Retype(n => n == "blk.3.ffn_up.weight", type)), "LLC0015", "'blk.3.ffn_up.weight'", name);

    [Fact]
    public void LLC0015_QuantizedNorm() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().Retype(n => n == "output_norm.weight", 8)), "LLC0015", "'output_norm.weight'", "Q8_0");

    [Fact]
    public void LLC0016_MissingTensor() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().WithoutTensor("blk.2.attn_k.weight")), "LLC0016", "'blk.2.attn_k.weight'", "is missing", "[32, 64]");

    [Fact]
    public void LLC0016_ShapeDisagreesWithTheHyperparameters() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().WithTensor("blk.0.ffn_down.weight", 0, 64, 128)), "LLC0016", "'blk.0.ffn_down.weight'", "[64, 128]", "[64, 172]");

    [Fact]
    public void LLC0016_RowsThatDoNotSplitIntoBlocks() =>
        SingleGguf(RunGguf(GgufHeaderBuilder.Stories260K().Retype(n => n == "blk.0.ffn_down.weight", 12)), "LLC0016", "'blk.0.ffn_down.weight'", "256", "172");

    [Fact]
    public void LLC0016_Qwen2WithoutItsBiases()
    {
        GeneratorRun run = RunGguf(GgufHeaderBuilder.Stories260K(arch: "qwen2", layers: 1));
        Assert.Equal(["'blk.0.attn_q.bias'", "'blk.0.attn_k.bias'", "'blk.0.attn_v.bias'"],
            run.GeneratorDiagnostics.Select(d => Assert.Single(Regex.Matches(d.GetMessage(), "'blk[^']*'")).Value));
        Assert.All(run.GeneratorDiagnostics, d => Assert.Equal("LLC0016", d.Id));
        Assert.Empty(run.Sources);
    }

    // ---------------------------------------------------------------- the catalogue itself

    [Fact]
    public void EveryDiagnosticIdIsDocumentedAndTested()
    {
        string root = Path.GetDirectoryName(Path.GetDirectoryName(Snapshot.Folder))!; // tests/
        root = Path.GetDirectoryName(root)!;
        string shipped = File.ReadAllText(Path.Combine(root, "src", "Generator", "AnalyzerReleases.Shipped.md"));
        string unshipped = File.ReadAllText(Path.Combine(root, "src", "Generator", "AnalyzerReleases.Unshipped.md"));
        string[] ids = Regex.Matches(shipped + unshipped, @"^(LLC\d{4})\s*\|", RegexOptions.Multiline).Select(m => m.Groups[1].Value).Distinct().ToArray();
        Assert.Contains("LLC0001", ids);
        Assert.Contains("LLC0013", ids);
        // Release 0.1.0 shipped LLC0001-LLC0013; a new id goes to Unshipped until the next release.
        string release = shipped.Substring(shipped.IndexOf("## Release 0.1.0", StringComparison.Ordinal));
        for (int n = 1; n <= 13; n++)
            Assert.Matches(@"(?m)^LLC" + n.ToString("D4", System.Globalization.CultureInfo.InvariantCulture) + @"\s*\|", release);

        // The generator's descriptors are exactly the tracked ids, each with its help link.
        DiagnosticDescriptor[] descriptors = Descriptors();
        Assert.Equal(ids.Order(), descriptors.Select(d => d.Id).Order());

        string docs = File.ReadAllText(Path.Combine(root, "docs", "diagnostics.md"));
        string[] tests = typeof(DiagnosticCatalogueTests).GetMethods().Select(m => m.Name).ToArray();
        foreach (DiagnosticDescriptor descriptor in descriptors)
        {
            string id = descriptor.Id, anchor = id.ToLowerInvariant();
            Assert.Equal("docs/diagnostics.md#" + anchor, descriptor.HelpLinkUri);
            // The heading "## LLC0001" is what makes the anchor #llc0001 (GitHub and every Markdown renderer).
            Assert.True(Regex.IsMatch(docs, @"^## " + id + @"\s*$", RegexOptions.Multiline), $"docs/diagnostics.md has no heading '## {id}' for the anchor #{anchor}");
            Assert.True(docs.Contains($"| [{id}](#{anchor}) | {descriptor.Title} |", StringComparison.Ordinal), $"docs/diagnostics.md's index has no row linking {id} with its title");
            Assert.True(tests.Any(t => t.StartsWith(id + "_", StringComparison.Ordinal)), $"no test named {id}_* in {nameof(DiagnosticCatalogueTests)}");
        }
    }

    /// <summary>Every descriptor the generator declares (the internal Diagnostics class, read by reflection).</summary>
    private static DiagnosticDescriptor[] Descriptors()
    {
        Type diagnostics = typeof(LlamaModelGenerator).Assembly.GetType("Llama.Compiled.Generator.Diagnostics", throwOnError: true)!;
        DiagnosticDescriptor[] found = diagnostics.GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
            .Where(f => f.FieldType == typeof(DiagnosticDescriptor))
            .Select(f => (DiagnosticDescriptor)f.GetValue(null)!)
            .ToArray();
        Assert.NotEmpty(found);
        return found;
    }
}
