using System;
using System.Collections.Generic;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Threading.Tasks;
using Json.Schema;
using OpenAI.Chat;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Server.Tests;

/// <summary><c>response_format</c> on /v1/chat/completions through the official OpenAI client: the answer is JSON that parses and validates.</summary>
[Collection(SharedServerCollection.Name)]
public sealed class ResponseFormatTests(SharedServer shared, ITestOutputHelper output)
{
    private const string DogSchema = """
        {"type": "object", "properties": {
          "name": {"type": "string", "minLength": 1, "maxLength": 8},
          "mood": {"enum": ["happy", "sad", "sleepy"]},
          "age": {"type": "integer", "minimum": 1, "maximum": 15},
          "good": {"type": "boolean"}},
         "required": ["name", "mood", "age", "good"], "additionalProperties": false}
        """;

    private TestServer Server => shared.Server;

    private static ChatCompletionOptions Options(ChatResponseFormat format, long seed) => new()
    {
        ResponseFormat = format,
        MaxOutputTokenCount = 400,
        Seed = seed,
        Temperature = 0.8f,
    };

    private static void Validate(string text, string schema)
    {
        using JsonDocument document = JsonDocument.Parse(text);
        EvaluationResults results = JsonSchema.FromText(schema).Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(results.IsValid, text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_json_schema_answer_parses_and_validates(bool streaming)
    {
        ChatClient client = Server.ChatClient();
        ChatResponseFormat format = ChatResponseFormat.CreateJsonSchemaFormat("dog", BinaryData.FromString(DogSchema), "A dog.", jsonSchemaIsStrict: true);
        for (long seed = 1; seed <= 3; seed++)
        {
            string text;
            ChatFinishReason? finish;
            if (streaming)
            {
                var builder = new StringBuilder();
                finish = null;
                await foreach (StreamingChatCompletionUpdate update in client.CompleteChatStreamingAsync([new UserChatMessage("Describe a dog.")], Options(format, seed)))
                {
                    foreach (ChatMessageContentPart part in update.ContentUpdate)
                        builder.Append(part.Text);
                    finish ??= update.FinishReason;
                }
                text = builder.ToString();
            }
            else
            {
                ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Describe a dog.")], Options(format, seed));
                text = completion.Content[0].Text;
                finish = completion.FinishReason;
            }
            output.WriteLine(text);
            Assert.Equal(ChatFinishReason.Stop, finish);
            Validate(text, DogSchema);
        }
    }

    [Fact]
    public async Task A_json_object_answer_is_a_JSON_object_streamed_or_not()
    {
        // The story model never closes an object of its own accord (its strings are stories): cut short, the answer is the
        // start of a JSON object, the same streamed or not.
        ChatClient client = Server.ChatClient();
        ChatCompletionOptions options = Options(ChatResponseFormat.CreateJsonObjectFormat(), 5);
        options.MaxOutputTokenCount = 60;
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("A cat, as JSON.")], options);
        string text = completion.Content[0].Text;
        output.WriteLine(text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.StartsWith("{", text);
        Assert.True(Grammar.AnyJson.IsPrefix(text), text);

        var builder = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate update in client.CompleteChatStreamingAsync([new UserChatMessage("A cat, as JSON.")], options))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate)
                builder.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(text, builder.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
    }

    [Fact]
    public async Task A_json_schema_without_bounds_completes_with_enough_tokens()
    {
        // A schema without a schema-given length: the object still closes (few, short members), finish_reason "stop".
        const string schema = """{"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["ok", "n"]}""";
        ChatClient client = Server.ChatClient();
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Is the cat ok?")],
            Options(ChatResponseFormat.CreateJsonSchemaFormat("answer", BinaryData.FromString(schema)), 3));
        output.WriteLine(completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Validate(completion.Content[0].Text, schema);
    }

    [Fact]
    public async Task A_text_format_is_the_plain_answer()
    {
        ChatClient client = Server.ChatClient();
        var options = new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateTextFormat(), Temperature = 0, MaxOutputTokenCount = 20 };
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Tell me a story about a dog.")], options);
        Assert.Equal((await Reference.GreedyAsync("Tell me a story about a dog.", 20)).Text, completion.Content[0].Text);
    }

    public static TheoryData<string, string> BadFormats => new()
    {
        // response_format, the error's param
        { """{"type": "xml"}""", "response_format.type" },
        { """{}""", "response_format.type" },
        { "\"json\"", "response_format" },
        { """{"type": "json_schema"}""", "response_format.json_schema" },
        { """{"type": "json_schema", "json_schema": {"schema": {}}}""", "response_format.json_schema.name" },
        { """{"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}""", "response_format.json_schema.name" },
        { """{"type": "json_schema", "json_schema": {"name": "x", "schema": 5}}""", "response_format.json_schema.schema" },
        { """{"type": "json_schema", "json_schema": {"name": "x", "strict": "yes", "schema": {}}}""", "response_format.json_schema.strict" },
        // Malformed schemas: the grammar compiler's message.
        { """{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": "zero"}}}""", "response_format" },
        { """{"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "https://example.com/schema.json"}}}""", "response_format" },
        { """{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(?<=a)b"}}}""", "response_format" },
    };

    [Theory]
    [MemberData(nameof(BadFormats))]
    public async Task A_bad_response_format_is_a_400_naming_it(string responseFormat, string param)
    {
        string body = $$"""{"messages": [{"role": "user", "content": "hi"}], "response_format": {{responseFormat}}}""";
        using HttpResponseMessage response = await Server.Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        output.WriteLine(text);
        Assert.True(400 == (int)response.StatusCode, $"{(int)response.StatusCode}: {text}");
        using JsonDocument json = JsonDocument.Parse(text);
        JsonElement error = json.RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
    }
}
