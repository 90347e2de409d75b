using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Tool calling through <see cref="LlamaChatClient"/> and M.E.AI's <c>UseFunctionInvocation()</c>: a scripted model
/// answers with a call in its family's syntax, the function runs with the parsed arguments, its result goes back into the
/// prompt (which must be the golden rendering of the conversation), and the model's final answer is the response.
/// </summary>
public class LlamaChatClientToolTests
{
    private static readonly Tokenizer Llama3Tokenizer = LlamaTokenizers.Load(Path.Combine(TestPaths.Tokenizers, "llama3"));
    private static readonly Tokenizer QwenTokenizer = LlamaTokenizers.Load(Path.Combine(TestPaths.Tokenizers, "qwen3"));
    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = 200, Sampling = new SamplingOptions { Temperature = 0f } };
    private const int VocabSize = 152_000; // above both vocabularies
    private const string FinalAnswer = "It is 22 °C and clear in Paris.";

    /// <summary>A model that keeps the sessions it creates, to see what they were fed.</summary>
    private sealed class RecordingModel(IReadOnlyList<int> script) : ILlamaModel
    {
        private readonly FakeLlamaModel _model = new(VocabSize, 8192, script);

        public List<FakeSession> Sessions { get; } = [];

        public LlamaModelShape Shape => _model.Shape;

        public ILlamaSession CreateSession()
        {
            var session = (FakeSession)_model.CreateSession();
            Sessions.Add(session);
            return session;
        }

        public void Dispose() { }
    }

    private sealed record Weather(int Temperature, string Unit, string Sky);

    /// <summary>
    /// A function made by <see cref="AIFunctionFactory"/> whose declaration is conversations.json's (so that the prompt is
    /// the golden's): the factory's own schema says the same in other words.
    /// </summary>
    private sealed class DeclaredAs(AIFunction function, AIFunctionDeclaration declaration) : DelegatingAIFunction(function)
    {
        public override string Description => declaration.Description;

        public override JsonElement JsonSchema => declaration.JsonSchema;
    }

    private sealed class Tools
    {
        public List<(string City, string Unit)> WeatherCalls { get; } = [];

        public List<string> TimeCalls { get; } = [];

        public IList<AITool> All => [
            new DeclaredAs(AIFunctionFactory.Create(GetWeather, "get_weather"), ChatToolTemplateTests.Tools[0]),
            new DeclaredAs(AIFunctionFactory.Create(GetTime, "get_time"), ChatToolTemplateTests.Tools[1]),
        ];

        private Weather GetWeather([Description("The city")] string city, string unit = "celsius")
        {
            WeatherCalls.Add((city, unit));
            return new Weather(22, unit, "clear");
        }

        private string GetTime(string timezone)
        {
            TimeCalls.Add(timezone);
            return "14:05";
        }
    }

    private static int[] Ids(Tokenizer tokenizer, string text) => [.. LlamaTokenizers.EncodeWithoutSpecialTokens(tokenizer, text)];

    private static int Special(Tokenizer tokenizer, string text) => ((ByteLevelBpeTokenizer)tokenizer).AddedTokens[text];

    /// <summary>Llama 3.2's template (the goldens' date) over the Llama 3 vocabulary; the model calls get_weather, then answers.</summary>
    private static (RecordingModel Model, LlamaChatClient Client) Llama()
    {
        int eot = Special(Llama3Tokenizer, "<|eot_id|>");
        int[] call = Ids(Llama3Tokenizer, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}");
        var model = new RecordingModel([.. call, eot, .. Ids(Llama3Tokenizer, FinalAnswer), eot]);
        return (model, new LlamaChatClient(model, Llama3Tokenizer, ChatToolTemplateTests.Template("Llama-3.2-1B-Instruct"), Greedy));
    }

    /// <summary>A Qwen template over the Qwen vocabulary; the model calls get_weather in a &lt;tool_call&gt; block, then answers.</summary>
    private static (RecordingModel Model, LlamaChatClient Client) Qwen(string model)
    {
        int end = Special(QwenTokenizer, "<|im_end|>");
        int[] call =
        [
            Special(QwenTokenizer, "<tool_call>"),
            .. Ids(QwenTokenizer, "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n"),
            Special(QwenTokenizer, "</tool_call>"),
        ];
        var recording = new RecordingModel([.. call, end, .. Ids(QwenTokenizer, FinalAnswer), end]);
        return (recording, new LlamaChatClient(recording, QwenTokenizer, ChatToolTemplateTests.Template(model), Greedy));
    }

    public static TheoryData<string, bool> Families => new()
    {
        { "Llama-3.2-1B-Instruct", false },
        { "Llama-3.2-1B-Instruct", true },
        { "Qwen2.5-0.5B-Instruct", false },
        { "Qwen3", false },
        { "Qwen3", true },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public async Task UseFunctionInvocationRunsTheCallAndFeedsTheResultBack(string family, bool streaming)
    {
        (RecordingModel model, LlamaChatClient client) = family.StartsWith("Llama", StringComparison.Ordinal) ? Llama() : Qwen(family);
        Tokenizer tokenizer = client.Tokenizer;
        bool system = family.StartsWith("Llama", StringComparison.Ordinal); // one with a system message, the others without
        var tools = new Tools();
        IChatClient chat = new ChatClientBuilder(client).UseFunctionInvocation().Build();
        List<ChatMessage> messages = ChatToolTemplateTests.Conversation("ask", system);
        var options = new ChatOptions { Tools = tools.All };

        ChatResponse response;
        List<ChatResponseUpdate> updates = [];
        if (streaming)
        {
            await foreach (ChatResponseUpdate update in chat.GetStreamingResponseAsync(messages, options))
                updates.Add(update);
            response = updates.ToChatResponse();
        }
        else
        {
            response = await chat.GetResponseAsync(messages, options);
        }

        // The function ran once, with the arguments the model wrote.
        Assert.Equal([("Paris", "celsius")], tools.WeatherCalls);
        Assert.Empty(tools.TimeCalls);
        Assert.Equal(FinalAnswer, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        // The response holds the call, its result and the answer.
        FunctionCallContent call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        FunctionResultContent result = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.Equal("get_weather", call.Name);
        if (streaming)
        {
            // The call's text never streamed as text.
            Assert.DoesNotContain(updates, u => u.Text.Contains("get_weather", StringComparison.Ordinal) || u.Text.Contains("tool_call", StringComparison.Ordinal));
        }

        // The one session first saw the golden prompt of the question, then went on (its cache reused) to the golden prompt
        // of the conversation with the call and its result, and the answer.
        FakeSession session = Assert.Single(model.Sessions);
        string variant = system ? "system" : "nosystem";
        Assert.Equal(ChatToolTemplateTests.Golden($"{family}.ask.{variant}"), tokenizer.Decode(session.Calls[0]));
        Assert.Equal(ChatToolTemplateTests.Golden($"{family}.call.{variant}") + FinalAnswer, tokenizer.Decode(session.CacheIds));
    }

    [Fact]
    public async Task TheCallIsAResponseOfItsOwnWithTheToolCallsFinishReason()
    {
        (_, LlamaChatClient client) = Qwen("Qwen3");
        var options = new ChatOptions { Tools = new Tools().All };

        ChatResponse response = await client.GetResponseAsync(ChatToolTemplateTests.Conversation("ask", system: false), options);

        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        Assert.Equal("", response.Text);
        FunctionCallContent call = Assert.IsType<FunctionCallContent>(Assert.Single(Assert.Single(response.Messages).Contents));
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", ((JsonElement)call.Arguments!["city"]!).GetString());
        Assert.Equal("celsius", ((JsonElement)call.Arguments["unit"]!).GetString());
    }

    [Fact]
    public async Task WithToolModeNoneTheToolsAreNotRenderedAndNothingIsParsed()
    {
        (RecordingModel model, LlamaChatClient client) = Qwen("Qwen3");
        var options = new ChatOptions { Tools = new Tools().All, ToolMode = ChatToolMode.None };
        List<ChatMessage> messages = ChatToolTemplateTests.Conversation("ask", system: false);

        ChatResponse response = await client.GetResponseAsync(messages, options);

        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.StartsWith("<tool_call>\n{\"name\": \"get_weather\"", response.Text);
        Assert.Equal(ChatTemplate.Qwen3.Render(messages), QwenTokenizer.Decode(model.Sessions[0].Calls[0]));
    }

    [Fact]
    public async Task ToolsForATemplateWithoutAToolFormatAreNotSupported()
    {
        var model = new FakeLlamaModel(512, 512, [2]);
        using LlamaChatClient client = model.AsChatClient(LlamaTokenizers.Load(TestPaths.Stories260KHf), ChatTemplate.Plain, Greedy);
        var options = new ChatOptions { Tools = new Tools().All };

        var e = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], options));
        Assert.Contains("'plain'", e.Message);
        // Without tools (or with ToolMode None) the same request is fine.
        Assert.Equal("", (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], new ChatOptions { Tools = options.Tools, ToolMode = ChatToolMode.None })).Text);
    }

    /// <summary>
    /// The tools with get_weather's parameters in a schema that grammars do not support (a remote <c>$ref</c>): calls are
    /// then not constrained.
    /// </summary>
    private static IList<AITool> UnconstrainableTools =>
    [
        AIFunctionFactory.CreateDeclaration("get_weather", "Gets the weather.",
            JsonDocument.Parse("""{"type": "object", "properties": {"city": {"$ref": "https://example.com/city.json"}}}""").RootElement),
        ChatToolTemplateTests.Tools[1],
    ];

    [Theory]
    [InlineData(null, true)]
    [InlineData("get_weather", true)]
    [InlineData(null, false)]
    [InlineData("get_weather", false)]
    public async Task ARequiredCallIsOpenedInThePrompt(string? function, bool constrained)
    {
        // Constrained, the prompt ends where the call's JSON starts (for Llama 3.1, with the assistant header); otherwise
        // (a schema grammars do not support) with the start of the call and the function's name, and the model writes the rest.
        string opening = constrained ? ToolCallFormat.Llama3Json.CallPrefix : ToolCallFormat.Llama3Json.GetOpening(function);
        string full = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
        Assert.StartsWith(opening, full);
        int eot = Special(Llama3Tokenizer, "<|eot_id|>");
        var model = new RecordingModel([.. Ids(Llama3Tokenizer, full[opening.Length..]), eot]);
        using var client = new LlamaChatClient(model, Llama3Tokenizer, ChatToolTemplateTests.Template("Llama-3.2-1B-Instruct"), Greedy);
        var options = new ChatOptions
        {
            Tools = constrained ? new Tools().All : UnconstrainableTools,
            ToolMode = function is null ? ChatToolMode.RequireAny : ChatToolMode.RequireSpecific(function),
        };
        List<ChatMessage> messages = ChatToolTemplateTests.Conversation("ask", system: true);

        ChatResponse response = await client.GetResponseAsync(messages, options);

        string prompt = Llama3Tokenizer.Decode(model.Sessions[0].Calls[0]);
        if (constrained)
            Assert.Equal(ChatToolTemplateTests.Golden("Llama-3.2-1B-Instruct.ask.system") + opening, prompt);
        else
            Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n" + opening, prompt);
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        FunctionCallContent call = Assert.IsType<FunctionCallContent>(Assert.Single(Assert.Single(response.Messages).Contents));
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", ((JsonElement)call.Arguments!["city"]!).GetString());

        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(messages, new ChatOptions { Tools = options.Tools, ToolMode = ChatToolMode.RequireSpecific("nope") }));
    }

    [Fact]
    public async Task ARequiredCallIsConstrainedToTheSchemaOfTheRequiredFunction()
    {
        // The prompt ends where the call's JSON starts, and a grammar of the call to get_time applies: generation ends where
        // the call's JSON does (the model would go on with "\n</tool_call>").
        int end = Special(QwenTokenizer, "<|im_end|>");
        string json = "{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}";
        var model = new RecordingModel([.. Ids(QwenTokenizer, json), .. Ids(QwenTokenizer, "\n"), Special(QwenTokenizer, "</tool_call>"), end]);
        using var client = new LlamaChatClient(model, QwenTokenizer, ChatTemplate.Qwen3, Greedy);
        var options = new ChatOptions { Tools = new Tools().All, ToolMode = ChatToolMode.RequireSpecific("get_time") };
        List<ChatMessage> messages = ChatToolTemplateTests.Conversation("ask", system: false);

        ChatResponse response = await client.GetResponseAsync(messages, options);

        string prompt = ChatToolTemplateTests.Golden("Qwen3.ask.nosystem") + "<tool_call>\n";
        Assert.Equal(prompt, QwenTokenizer.Decode(model.Sessions[0].Calls[0]));
        Assert.Equal(prompt, QwenTokenizer.Decode(client.EncodePrompt(messages, options)));
        Assert.Equal(Ids(QwenTokenizer, json).Length, client.LastStats!.GeneratedTokens);
        Assert.Equal(StopReason.EndOfSequence, client.LastStats.StopReason);
        FunctionCallContent call = Assert.IsType<FunctionCallContent>(Assert.Single(Assert.Single(response.Messages).Contents));
        Assert.Equal("get_time", call.Name);
        Assert.Equal("Europe/Paris", ((JsonElement)call.Arguments!["timezone"]!).GetString());
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
    }

    [Fact]
    public async Task TextBeforeCallsStaysTextAndSeveralCallsComeBack()
    {
        int end = Special(QwenTokenizer, "<|im_end|>");
        string answer = "Let me look both up.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n</tool_call>";
        var model = new RecordingModel([.. Ids(QwenTokenizer, answer), end]);
        using var client = new LlamaChatClient(model, QwenTokenizer, ChatTemplate.Qwen3, Greedy);
        var options = new ChatOptions { Tools = new Tools().All };

        List<ChatResponseUpdate> updates = [];
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(ChatToolTemplateTests.Conversation("ask", system: false), options))
            updates.Add(update);
        ChatResponse response = updates.ToChatResponse();

        Assert.Equal("Let me look both up.", string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(["get_weather", "get_time"], response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Select(c => c.Name));
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        // Rendered back, the message is what the model wrote.
        ChatMessage message = Assert.Single(response.Messages);
        string rendered = ChatTemplate.Qwen3.Render([new ChatMessage(ChatRole.User, "x"), message, new ChatMessage(ChatRole.User, "y")], tools: null);
        Assert.Contains("<|im_start|>assistant\n" + answer + "<|im_end|>\n", rendered);
    }

    [Fact]
    public async Task AMalformedCallComesBackAsText()
    {
        // Calls to tools whose schemas grammars support cannot be malformed (see ToolCallGrammarTests); these are not constrained.
        int eot = Special(Llama3Tokenizer, "<|eot_id|>");
        string answer = "{\"name\": \"get_weather\", \"parameters\": {\"city\": }";
        var model = new RecordingModel([.. Ids(Llama3Tokenizer, answer), eot]);
        using var client = new LlamaChatClient(model, Llama3Tokenizer, ChatTemplate.Llama31, Greedy);

        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather?")], new ChatOptions { Tools = UnconstrainableTools });

        Assert.Equal(answer, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
    }
}
